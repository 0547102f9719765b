package transform

import (
	"math"
	"time"
)

// sample is one non-null value of the history, time in Unix nanoseconds.
type sample struct {
	t int64
	v float64
}

// ring is a FIFO/LIFO over a power-of-two buffer that grows by doubling and
// never shrinks, so a device in steady state allocates nothing.
type ring[T any] struct {
	buf  []T
	head int // index of the front
	n    int
}

func (r *ring[T]) len() int { return r.n }

func (r *ring[T]) at(i int) *T { return &r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring[T]) front() *T { return &r.buf[r.head] }

func (r *ring[T]) back() *T { return r.at(r.n - 1) }

func (r *ring[T]) pushBack(x T) {
	if r.n == len(r.buf) {
		grown := make([]T, max(16, 2*len(r.buf)))
		for i := range r.n {
			grown[i] = *r.at(i)
		}
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = x
	r.n++
}

func (r *ring[T]) popFront() T {
	x := r.buf[r.head]
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return x
}

func (r *ring[T]) popBack() { r.n-- }

// blockSpan is the length of the blocks of absolute time (aligned to the
// Unix epoch) the rolling statistics are assembled from: a quarter of the
// default one-hour window, so a query merges at most 5 parts. The span
// does not change the statistics' accuracy or their independence from the
// history, only the cost: a query merges about Window/blockSpan + 1 parts,
// and a window shorter than the span re-sums its values at every query.
const blockSpan = int64(900 * time.Second)

// blockOf is the index of the block holding time t: floor(t / blockSpan).
func blockOf(t int64) int64 {
	b := t / blockSpan
	if t%blockSpan < 0 {
		b--
	}
	return b
}

// sums are the moments of a run of n values around a reference k, which
// is one of those values: s1 = Σ (v − k) and s2 = Σ (v − k)², accumulated
// in a fixed order. Shifting by a member keeps s2 − s1²/n accurate to
// about (n + 1)·2⁻⁵³ relative, whatever the offset of the values.
type sums struct {
	n      int
	k      float64
	s1, s2 float64
}

func (s *sums) add(v float64) {
	d := v - s.k
	s.s1 += d
	s.s2 += float64(d * d) // the conversion forbids fusing into an FMA
	s.n++
}

// piece is the mean (relative to k) and the sum of squared deviations of a
// run of values, the unit the statistics of a window are merged from.
type piece struct {
	n        int
	k        float64
	mean, m2 float64
}

func (s sums) piece() piece {
	mean := s.s1 / float64(s.n)
	return piece{n: s.n, k: s.k, mean: mean, m2: max(s.s2-float64(s.s1*mean), 0)}
}

// block is the run of values whose time falls in one block of absolute
// time, in order.
type block struct {
	idx    int64 // blockOf of its values
	sums         // all its values, from its first (k), forward
	closed piece // sums.piece() once a later block has begun
}

// rolling keeps the non-null values of a trailing time window with their
// count, mean, sample standard deviation, minimum and maximum.
//
// The statistics of a window are a function of the values in it (and
// their times) alone, bit for bit: they do not depend on when the history
// began or on what left the window before, so reprocessing any stretch of
// readings whose lookback covers the window reproduces them exactly. To
// that end time is cut into blocks of blockSpan aligned to absolute time,
// and the values held are split into parts, in time order:
//   - the head: the values held of the block of the oldest value held,
//     summed backward from the last value of that block. A block's suffix
//     sums are computed once, when it becomes the head, so evictions cost
//     O(1) amortised;
//   - every later block but the last, summed forward from its first value
//     (all its values are in the window), closed when the next began;
//   - the last block, summed forward from its first value as values come;
//   - or, when all values held lie in one block, that single part summed
//     forward from the first value held (the block's own running sums
//     when none of its values has been evicted, the same numbers).
//
// No part depends on a value outside the window; a block only partly in
// the window is never used whole. Each part keeps sums of (v − k) and
// (v − k)² around one of its own values k, which keeps them accurate
// whatever the offset of the values. The parts are then merged two-pass
// around the first part's k: the mean of their deviations first, then
// their spread about it, with the rounding of that mean corrected. A
// query costs O(parts), an update O(1) amortised.
//
// When all values held are equal (a stuck sensor), the mean is that value
// and the standard deviation exactly 0.
//
// Minimum and maximum come from monotonic deques: mins holds the values
// that may still become the minimum (increasing from front to back), maxs
// likewise for the maximum.
type rolling struct {
	values     ring[sample]
	mins, maxs ring[sample]
	blocks     ring[block] // the blocks with values held, in time order
	gone       int         // values of blocks.front() already evicted

	// Suffix sums of the head block, computed when headReady: headS1[j]
	// and headS2[j] are the sums of its last j + 1 values around headK,
	// the last of them.
	headReady      bool
	headK          float64
	headS1, headS2 []float64

	// The sums of the values held when they all lie in one block of which
	// some values were evicted, kept until the values held change (a run
	// of null readings queries the same window over and over).
	single      sums
	singleReady bool

	reread int // for tests: values summed again for a head or a single part
}

// evictBefore drops the values older than cutoff (time < cutoff).
func (w *rolling) evictBefore(cutoff int64) {
	for w.values.len() > 0 && w.values.front().t < cutoff {
		w.values.popFront()
		w.singleReady = false
		w.gone++
		if w.gone == w.blocks.front().n {
			w.blocks.popFront()
			w.gone, w.headReady = 0, false
		}
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
	w.singleReady = false
	w.values.pushBack(sample{t, v})
	idx := blockOf(t)
	if w.blocks.len() == 0 || w.blocks.back().idx != idx {
		if w.blocks.len() > 0 {
			last := w.blocks.back()
			last.closed = last.piece()
		}
		w.blocks.pushBack(block{idx: idx, sums: sums{k: v}})
	}
	w.blocks.back().add(v)
	for w.mins.len() > 0 && w.mins.back().v >= v {
		w.mins.popBack()
	}
	w.mins.pushBack(sample{t, v})
	for w.maxs.len() > 0 && w.maxs.back().v <= v {
		w.maxs.popBack()
	}
	w.maxs.pushBack(sample{t, v})
}

// head returns the sums of the values held in the front block, which is
// not the last block: backward from the block's last value.
func (w *rolling) head() sums {
	h := w.blocks.front().n - w.gone
	if !w.headReady {
		if cap(w.headS1) < h {
			w.headS1, w.headS2 = make([]float64, h, 2*h), make([]float64, h, 2*h)
		}
		w.headS1, w.headS2 = w.headS1[:h], w.headS2[:h]
		s := sums{k: w.values.at(h - 1).v}
		for j := range h {
			s.add(w.values.at(h - 1 - j).v)
			w.headS1[j], w.headS2[j] = s.s1, s.s2
		}
		w.headK, w.headReady = s.k, true
		w.reread += h
	}
	return sums{n: h, k: w.headK, s1: w.headS1[h-1], s2: w.headS2[h-1]}
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
		// All values identical (a stuck sensor): exact.
		st.Mean, st.Std, st.HasStd = st.Min, 0, n >= 2
		return
	}

	// The parts, in time order: first, the blocks in between, last.
	var first, last piece
	nb := w.blocks.len()
	if nb == 1 {
		if w.gone == 0 {
			first = w.blocks.front().piece()
		} else {
			// The values held, forward from the first: what the block's
			// own sums are when nothing of it has been evicted.
			if !w.singleReady {
				w.single = sums{k: w.values.front().v}
				for i := range n {
					w.single.add(w.values.at(i).v)
				}
				w.singleReady = true
				w.reread += n
			}
			first = w.single.piece()
		}
	} else {
		first, last = w.head().piece(), w.blocks.back().piece()
	}

	// Two-pass over the parts, around the first part's reference k (a
	// value held): the mean of their deviations from k, then their spread
	// about it, corrected for the rounding of that mean.
	k := first.k
	nf := float64(n)
	total := float64(float64(first.n) * first.mean)
	for i := 1; i < nb-1; i++ {
		p := &w.blocks.at(i).closed
		total += float64(float64(p.n) * ((p.k - k) + p.mean))
	}
	if nb > 1 {
		total += float64(float64(last.n) * ((last.k - k) + last.mean))
	}
	mean := total / nf
	d := first.mean - mean
	dev := float64(float64(first.n) * d)
	devSq := float64(dev * d)
	m2 := first.m2
	for i := 1; i < nb-1; i++ {
		p := &w.blocks.at(i).closed
		d := (p.k - k) + p.mean - mean
		pd := float64(float64(p.n) * d)
		dev += pd
		devSq += float64(pd * d)
		m2 += p.m2
	}
	if nb > 1 {
		d := (last.k - k) + last.mean - mean
		pd := float64(float64(last.n) * d)
		dev += pd
		devSq += float64(pd * d)
		m2 += last.m2
	}
	m2 += devSq - float64(dev*dev)/nf
	st.Mean = k + (mean + dev/nf)
	// Rounding cannot move the mean outside the values it averages.
	st.Mean = min(max(st.Mean, st.Min), st.Max)
	if n >= 2 {
		st.Std, st.HasStd = math.Sqrt(max(m2, 0)/(nf-1)), true
	}
}
