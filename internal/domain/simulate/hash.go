package simulate

import "math"

// golden is 2^64 divided by the golden ratio, the usual odd constant for
// spreading consecutive integers over 64 bits.
const golden = 0x9e3779b97f4a7c15

// mix64 is the splitmix64 finaliser: a bijective, well-avalanched hash of x.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashString is FNV-1a over s, finalised by mix64.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

// combine hashes parts in order into one key.
func combine(parts ...uint64) uint64 {
	h := uint64(golden)
	for _, p := range parts {
		h = mix64(h ^ (p + golden))
	}
	return h
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// between maps a hash to [lo, hi).
func between(h uint64, lo, hi float64) float64 { return lo + (hi-lo)*unit(h) }

// signed maps a hash to [-1, 1).
func signed(h uint64) float64 { return 2*unit(h) - 1 }

// smoothstep is 0 below 0, 1 above 1 and a C1-continuous ramp between.
func smoothstep(x float64) float64 {
	switch {
	case x <= 0:
		return 0
	case x >= 1:
		return 1
	}
	return x * x * (3 - 2*x)
}

// valueNoise is smooth 1-D value noise in [-1, 1]: random values at integer
// x, joined by smoothstep. Its slope never exceeds 3 per unit of x, which is
// what keeps the generated signals far below each type's MaxRatePerMin.
func valueNoise(key uint64, x float64) float64 {
	fl := math.Floor(x)
	i := int64(fl)
	a := signed(mix64(key ^ uint64(i)*golden))
	b := signed(mix64(key ^ uint64(i+1)*golden))
	return a + (b-a)*smoothstep(x-fl)
}
