package metrics

import "math"

// ValidBounds reports whether histogram bounds can be read: at least two,
// positive and strictly increasing.
func ValidBounds(b []int64) bool {
	if len(b) < 2 || b[0] <= 0 {
		return false
	}
	for i := 1; i < len(b); i++ {
		if b[i] <= b[i-1] {
			return false
		}
	}
	return true
}

// Edges are bucket i's lower and upper bounds in µs: the first bucket
// starts one step below its bound, the +Inf bucket ends one step above the
// last bound (the step being the ratio of the neighbouring bounds). The
// bounds must be valid.
func Edges(b []int64, i int) (lo, hi float64) {
	switch {
	case i >= len(b): // +Inf
		lo = float64(b[len(b)-1])
		return lo, lo * lo / float64(b[len(b)-2])
	case i == 0:
		hi = float64(b[0])
		return hi * float64(b[0]) / float64(b[1]), hi
	default:
		return float64(b[i-1]), float64(b[i])
	}
}

// HistQuantile is the q-quantile in µs of a histogram (counts: one more than
// bounds), interpolated on a log scale inside its bucket; 0 without data or
// with unreadable bounds.
func HistQuantile(bounds []int64, counts []uint64, q float64) float64 {
	if len(counts) != len(bounds)+1 || !ValidBounds(bounds) {
		return 0
	}
	var total float64
	for _, c := range counts {
		total += float64(c)
	}
	if total == 0 {
		return 0
	}
	rank := q * total
	var cum float64
	for i, c := range counts {
		if c > 0 && cum+float64(c) >= rank {
			lo, hi := Edges(bounds, i)
			f := (rank - cum) / float64(c)
			return math.Exp(math.Log(lo) + f*(math.Log(hi)-math.Log(lo)))
		}
		cum += float64(c)
	}
	lo, hi := Edges(bounds, len(bounds))
	return math.Sqrt(lo * hi)
}

// Above is how many of a histogram's observations lie above x µs, the
// bucket that holds x counted in proportion on a log scale; below is the
// rest. With unreadable bounds both are 0.
func Above(bounds []int64, counts []uint64, x float64) (above, below float64) {
	if len(counts) != len(bounds)+1 || !ValidBounds(bounds) {
		return 0, 0
	}
	for i, c := range counts {
		if c == 0 {
			continue
		}
		lo, hi := Edges(bounds, i)
		switch {
		case x <= lo:
			above += float64(c)
		case x >= hi:
			below += float64(c)
		default:
			f := (math.Log(hi) - math.Log(x)) / (math.Log(hi) - math.Log(lo))
			above += f * float64(c)
			below += (1 - f) * float64(c)
		}
	}
	return above, below
}
