// Package domain holds the pure rules of iot-etl: decoding and validating
// readings, the transform (enrichment, rolling statistics, anomaly rules,
// quality scores), the stream's windows, ML features and the anomaly model
// trained on them, the device simulator, the stream ingest core and the
// batch window. Its packages do no I/O, read no clock of their own and
// import nothing of the project outside domain/, and no Temporal, pgx,
// database/sql or franz-go.
package domain
