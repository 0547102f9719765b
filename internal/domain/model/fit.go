package model

import (
	"cmp"
	"math"
	"slices"
)

// fitLogistic minimises the mean logistic loss plus L2/2·|w|² (the
// intercept is not penalised) by o.Iterations full-batch gradient steps from
// zero. The sums run in row order, so the result is the same on every run.
func fitLogistic(x [][]float64, y []float64, o Options) (intercept float64, w []float64) {
	nf := len(x[0])
	n := float64(len(x))
	w = make([]float64, nf)
	grad := make([]float64, nf)
	for range o.Iterations {
		clear(grad)
		var gb float64
		for i, xi := range x {
			z := intercept
			for j, v := range xi {
				z += w[j] * v
			}
			r := sigmoid(z) - y[i]
			gb += r
			for j, v := range xi {
				grad[j] += r * v
			}
		}
		intercept -= o.LearningRate * gb / n
		for j := range w {
			w[j] -= o.LearningRate * (grad[j]/n + o.L2*w[j])
		}
	}
	return intercept, w
}

// fitStumps boosts o.Iterations decision stumps on the logistic loss with
// Newton steps: each round picks the split of largest gain
// G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ) over the gradients G and hessians H
// of the rows on either side, and adds leaves −LearningRate·G/(H+λ). Ties in
// gain keep the first split found: the lower feature index, then the lower
// threshold. It stops early when no feature has two distinct values.
func fitStumps(x [][]float64, y []float64, o Options) (base float64, stumps []Stump) {
	n, nf := len(x), len(x[0])
	var pos float64
	for _, v := range y {
		pos += v
	}
	base = math.Log(pos / (float64(n) - pos)) // Train ensures both classes are present
	// Per feature, the rows in order of value (row index breaking ties).
	order := make([][]int, nf)
	for j := range nf {
		order[j] = make([]int, n)
		for i := range order[j] {
			order[j][i] = i
		}
		slices.SortFunc(order[j], func(a, b int) int { return cmp.Or(cmp.Compare(x[a][j], x[b][j]), cmp.Compare(a, b)) })
	}
	f := make([]float64, n)
	for i := range f {
		f[i] = base
	}
	g, h := make([]float64, n), make([]float64, n)
	lambda := o.L2
	for range o.Iterations {
		var gs, hs float64
		for i := range f {
			p := sigmoid(f[i])
			g[i], h[i] = p-y[i], p*(1-p)
			gs += g[i]
			hs += h[i]
		}
		parent := gs * gs / (hs + lambda)
		best := Stump{Feature: -1}
		bestGain := math.Inf(-1)
		var bestGL, bestHL float64
		for j := range nf {
			var gl, hl float64
			idx := order[j]
			for k := 0; k < n-1; k++ {
				gl += g[idx[k]]
				hl += h[idx[k]]
				lo, hi := x[idx[k]][j], x[idx[k+1]][j]
				if lo == hi {
					continue
				}
				gr, hr := gs-gl, hs-hl
				gain := gl*gl/(hl+lambda) + gr*gr/(hr+lambda) - parent
				if gain > bestGain {
					bestGain, bestGL, bestHL = gain, gl, hl
					best = Stump{Feature: j, Threshold: midpoint(lo, hi)}
				}
			}
		}
		if best.Feature < 0 {
			break
		}
		best.Left = -o.LearningRate * bestGL / (bestHL + lambda)
		best.Right = -o.LearningRate * (gs - bestGL) / (hs - bestHL + lambda)
		stumps = append(stumps, best)
		for i := range f {
			if x[i][best.Feature] <= best.Threshold {
				f[i] += best.Left
			} else {
				f[i] += best.Right
			}
		}
	}
	return base, stumps
}

// midpoint is a threshold t with lo <= t < hi.
func midpoint(lo, hi float64) float64 {
	if t := lo + (hi-lo)/2; t < hi {
		return t
	}
	return lo
}
