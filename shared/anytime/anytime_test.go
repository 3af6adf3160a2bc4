package anytime

import (
	"math"
	"math/rand/v2"
	"testing"
)

// crossings runs trials of two Bernoulli streams, looks times each
// (batch requests per group per look), and counts the trials in which the
// confidence sequence's lower bound on canary − baseline ever went above
// delta: a false alarm when the true difference is at most delta.
func crossings(trials, looks, batch int, pb, pc, delta, alpha float64, seed uint64) int {
	n := 0
	for i := range trials {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		var st Rates
		for range looks {
			for range batch {
				if r.Float64() < pb {
					st.BaseEvents++
				}
				if r.Float64() < pc {
					st.CanEvents++
				}
			}
			st.BaseN += float64(batch)
			st.CanN += float64(batch)
			if _, lo, _ := st.Interval(alpha); lo > delta {
				n++
				break
			}
		}
	}
	return n
}

// TestCoverageWholeSequence: at the edge of the null (canary worse by
// exactly delta), with 100 looks, the chance that the lower bound is ever
// above delta stays under alpha; the same data judged by a fixed-horizon
// z-test at every look fails far more often (peeking). Seeded: the counts
// are exact.
func TestCoverageWholeSequence(t *testing.T) {
	const trials, looks, batch, alpha = 1000, 100, 100, 0.05
	got := crossings(trials, looks, batch, 0.02, 0.025, 0.005, alpha, 1)
	if float64(got)/trials > alpha {
		t.Fatalf("false alarms %d of %d, above alpha %g", got, trials, alpha)
	}
	if got != 7 {
		t.Fatalf("false alarms %d of %d (pinned: 7)", got, trials)
	}
	// the same at every look with a fixed-horizon one-sided z-test at alpha
	peek := 0
	z := NormQuantile(1 - alpha)
	for i := range trials {
		r := rand.New(rand.NewPCG(1, uint64(i)))
		var st Rates
		for range looks {
			for range batch {
				if r.Float64() < 0.02 {
					st.BaseEvents++
				}
				if r.Float64() < 0.025 {
					st.CanEvents++
				}
			}
			st.BaseN += batch
			st.CanN += batch
			est, v := st.Diff()
			if (est-0.005)/math.Sqrt(v) > z {
				peek++
				break
			}
		}
	}
	t.Logf("confidence sequence: %d false alarms of %d; a z-test at every look: %d", got, trials, peek)
	if peek < 3*got || float64(peek)/trials < 2*alpha {
		t.Fatalf("peeking failed only %d of %d", peek, trials)
	}
}

// TestDetects: a real difference of 1 point at 1 % is found.
func TestDetects(t *testing.T) {
	if got := crossings(200, 100, 100, 0.01, 0.02, 0, 0.01, 2); got < 190 {
		t.Fatalf("detected %d of 200", got)
	}
}

func TestRadius(t *testing.T) {
	if Radius(1e-4, 0.01) <= Radius(1e-5, 0.01) {
		t.Fatal("radius does not shrink with the variance")
	}
	if Radius(1e-4, 0.001) <= Radius(1e-4, 0.01) {
		t.Fatal("radius does not grow with the confidence")
	}
	// the normal mixture is wider than the fixed-horizon interval, and not
	// absurdly so
	v := 1e-4
	fixed := NormQuantile(0.99) * math.Sqrt(v)
	if r := Radius(v, 0.01); r < fixed || r > 3*fixed {
		t.Fatalf("radius %g against the fixed-horizon %g", r, fixed)
	}
	if Radius(0, 0.01) != 0 {
		t.Fatal("zero variance")
	}
}

func TestOneRateAndFixedUpper(t *testing.T) {
	est, lo, hi := OneRate(10, 1000, 0.01)
	if est != 0.01 || lo < 0 || lo >= 0.01 || hi <= 0.01 || hi > 1 {
		t.Fatalf("one rate %g [%g, %g]", est, lo, hi)
	}
	if u := FixedUpper(0, 0, 0.01); u != 1 {
		t.Fatalf("no data: %g", u)
	}
	if u := FixedUpper(10, 1000, 0.01); u <= 0.01 || u > 0.03 {
		t.Fatalf("fixed upper %g", u)
	}
	if e := Evidence(0.02, 1e-6, 0.001, 0.01, 1); e < 1 {
		t.Fatalf("evidence %g for a difference 19 sd above the null", e)
	}
	if e := Evidence(-0.02, 1e-6, 0.001, 0.01, 1); e != 0 {
		t.Fatalf("evidence %g on the good side", e)
	}
}

// TestBeyondAgreesWithRadius: the one-evaluation test and the bisected
// radius give the same verdicts.
func TestBeyondAgreesWithRadius(t *testing.T) {
	for _, v := range []float64{1e-8, 1e-6, 1e-4, 1e-2} {
		for _, alpha := range []float64{0.0001, 0.01, 0.1} {
			rad := Radius(v, alpha)
			for _, f := range []float64{0.5, 0.99, 1.01, 2} {
				est := 0.001 + f*rad
				if got, want := Beyond(est, v, 0.001, alpha), est-rad > 0.001; got != want {
					t.Errorf("v %g α %g: est − θ0 = %.4f × radius: Beyond %v, radius says %v", v, alpha, f, got, want)
				}
			}
		}
	}
}
