// Package model is a small, deterministic anomaly model over the device-hour
// features of dwh.ml_features: it learns from rows whose ground truth is known
// (a seeded anomaly overlaps the hour) and scores new rows with a probability
// that an anomaly happened in that hour. It is pure: the caller reads the rows
// and stores the encoded model; Train, Score, Encode and Decode do no I/O and
// read no clock, and the same rows always give the same bytes.
//
// # Features
//
// Each Row becomes a vector of derived features (FeatureVersion 1; the
// names are those of Model.Features):
//
//   - log1p_anomaly_count: log(1 + anomaly_count), the rule detector's
//     readings flagged in the hour, compressed so that a stuck hour with 40
//     flags does not outweigh everything else.
//   - log1p_missing: log(1 + max(0, expected − count)), readings missing from
//     the hour (outages). expected is the largest count seen for the device
//     type in training (60 at one reading a minute), the largest over all
//     types for a type not seen in training.
//   - stuck: 1 when std = 0 with count > 1 (every value repeats), else 0.
//   - spike_up: (max − mean)/std, and spike_down: (mean − min)/std, how far
//     the extremes lie from the mean in standard deviations of the hour.
//   - jump: |mean − prev_hour_mean|/std, a level shift against the previous
//     hour (jumps and drift).
//   - trend: |slope|·60/std, the change of the fitted line over the hour in
//     standard deviations (ramps and drift).
//   - mean_quality: the mean quality score of the hour's readings.
//   - null_mean, null_std, null_slope, null_prev_hour_mean: 1 when the column
//     is NULL (no value, fewer than two values, values at fewer than two
//     times, no value in the previous hour). min and max are NULL exactly
//     when mean is, so they need no indicator of their own.
//   - type_<device_type>: a one-hot of the device types seen in training; a
//     type not seen in training is all zeros.
//
// Every ratio is 0 when its divisor is NULL, zero or not finite, and is capped
// at ±[RatioCap], so no NaN or Inf reaches the weights or the scores.
// The features are then standardised with the mean and scale of the training
// rows, stored in the model.
//
// Why scale-free features: the device types measure on very different scales
// (a temperature moves by tenths of a degree, a power meter by hundreds of
// watts). Raw mean, std, min and max would make the model learn the level of
// each type instead of what is abnormal for it, and it would not carry over
// to a device whose normal level differs from the training fleet's. Ratios
// to the hour's own standard deviation, counts and indicators mean the same
// thing on every device.
//
// # Kinds
//
// "logistic" is L2-regularised logistic regression fitted by full-batch
// gradient descent with a fixed number of iterations. "stumps" is gradient
// boosting of decision stumps on the logistic loss (Newton steps, L2 on the
// leaf values), whose candidate thresholds are the midpoints between sorted
// distinct feature values; ties in gain go to the lower feature index, then
// the lower threshold. Neither uses randomness: Options.Seed is recorded in
// Training for the caller's bookkeeping only.
//
// The threshold of Flag is chosen on the training rows to maximise F1, ties
// going to the higher threshold.
package model
