package transform

import "math"

// sample is one non-null value of the history, time in Unix nanoseconds.
type sample struct {
	t int64
	v float64
}

// ring is a FIFO/LIFO of samples over a power-of-two buffer that grows by
// doubling and never shrinks, so a device in steady state allocates nothing.
type ring struct {
	buf  []sample
	head int // index of the front
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) at(i int) sample { return r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring) front() sample { return r.buf[r.head] }

func (r *ring) back() sample { return r.at(r.n - 1) }

func (r *ring) pushBack(s sample) {
	if r.n == len(r.buf) {
		grown := make([]sample, max(16, 2*len(r.buf)))
		for i := range r.n {
			grown[i] = r.at(i)
		}
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = s
	r.n++
}

func (r *ring) popFront() sample {
	s := r.buf[r.head]
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return s
}

func (r *ring) popBack() { r.n-- }

// rolling keeps the non-null values of a trailing time window with their
// count, mean, sample standard deviation, minimum and maximum, each update
// O(1) amortised.
//
// Mean and variance come from running sums of (v − ref) and (v − ref)²
// around a reference value ref. Adding and removing values leaves rounding
// residue proportional to the largest sum seen, which matters once the
// window's spread collapses (a spike leaves, a sensor sticks). The sums are
// therefore recomputed exactly (two-pass, ref = mean) every ~2n updates and
// whenever the spread falls below 1/16 of that largest sum: the relative
// error of the variance stays below about n·16·2⁻⁵³.
//
// Minimum and maximum come from monotonic deques: mins holds the values
// that may still become the minimum (increasing from front to back), maxs
// likewise for the maximum.
type rolling struct {
	values     ring
	mins, maxs ring

	ref     float64 // reference value of the sums
	sum     float64 // Σ (v − ref)
	sumSq   float64 // Σ (v − ref)²
	peakSq  float64 // largest sumSq since the last rebase
	updates int     // adds and removes since the last rebase
	rebases int     // for tests: how often the sums were recomputed
}

// evictBefore drops the values older than cutoff (time < cutoff).
func (w *rolling) evictBefore(cutoff int64) {
	for w.values.len() > 0 && w.values.front().t < cutoff {
		s := w.values.popFront()
		d := s.v - w.ref
		w.sum -= d
		w.sumSq -= d * d
		w.updates++
	}
	for w.mins.len() > 0 && w.mins.front().t < cutoff {
		w.mins.popFront()
	}
	for w.maxs.len() > 0 && w.maxs.front().t < cutoff {
		w.maxs.popFront()
	}
}

// add appends a value; t must be later than every value already held.
func (w *rolling) add(t int64, v float64) {
	if w.values.len() == 0 {
		// A fresh start costs nothing and removes all residue.
		w.ref, w.sum, w.sumSq, w.peakSq, w.updates = v, 0, 0, 0, 0
	}
	w.values.pushBack(sample{t, v})
	d := v - w.ref
	w.sum += d
	w.sumSq += d * d
	w.peakSq = max(w.peakSq, w.sumSq)
	w.updates++
	for w.mins.len() > 0 && w.mins.back().v >= v {
		w.mins.popBack()
	}
	w.mins.pushBack(sample{t, v})
	for w.maxs.len() > 0 && w.maxs.back().v <= v {
		w.maxs.popBack()
	}
	w.maxs.pushBack(sample{t, v})
}

// rebase recomputes the sums around the current mean, two-pass.
func (w *rolling) rebase() {
	n := w.values.len()
	total := 0.0
	for i := range n {
		total += w.values.at(i).v
	}
	w.ref = total / float64(n)
	w.sum, w.sumSq = 0, 0
	for i := range n {
		d := w.values.at(i).v - w.ref
		w.sum += d
		w.sumSq += d * d
	}
	w.peakSq, w.updates = w.sumSq, 0
	w.rebases++
}

// stats fills count, mean, std, min and max of the values held.
func (w *rolling) stats(st *Stats) {
	n := w.values.len()
	st.Count = n
	if n == 0 {
		return
	}
	st.Min, st.Max = w.mins.front().v, w.maxs.front().v
	if st.Min == st.Max {
		// All values identical (a stuck sensor): exact, whatever the residue.
		st.Mean, st.Std, st.HasStd = st.Min, 0, n >= 2
		return
	}
	nf := float64(n)
	m2 := w.sumSq - w.sum*w.sum/nf
	if w.updates > 2*n+64 || m2 < w.peakSq/16 {
		w.rebase()
		m2 = w.sumSq - w.sum*w.sum/nf
	}
	st.Mean = w.ref + w.sum/nf
	// Rounding cannot move the mean outside the values it averages.
	st.Mean = min(max(st.Mean, st.Min), st.Max)
	if n >= 2 {
		st.Std, st.HasStd = math.Sqrt(max(m2, 0)/(nf-1)), true
	}
}
