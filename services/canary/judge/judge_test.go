package judge

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestMannWhitneyKnownValues(t *testing.T) {
	// fully separated samples: U = n1·n2, tiny p
	u, p := MannWhitney([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []float64{11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	if u != 100 || p > 0.001 {
		t.Fatalf("separated: U=%v p=%v", u, p)
	}
	// identical samples: U = n1·n2/2, p = 1
	if u, p := MannWhitney([]float64{1, 2, 3}, []float64{1, 2, 3}); u != 4.5 || p < 0.99 {
		t.Fatalf("identical: U=%v p=%v", u, p)
	}
	// all tied: no information
	if _, p := MannWhitney([]float64{5, 5, 5}, []float64{5, 5}); p != 1 {
		t.Fatalf("all ties: p=%v", p)
	}
}

func TestHodgesLehmannMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	x, y := make([]float64, 37), make([]float64, 41)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	for i := range y {
		y[i] = r.NormFloat64() + 0.3
	}
	var d []float64
	for _, a := range x {
		for _, b := range y {
			d = append(d, b-a)
		}
	}
	sort.Float64s(d)
	xs, ys := append([]float64(nil), x...), append([]float64(nil), y...)
	sort.Float64s(xs)
	sort.Float64s(ys)
	for _, k := range []int{0, 1, 100, len(d) / 2, len(d) - 1} {
		if got := kthDiff(xs, ys, k); math.Abs(got-d[k]) > 1e-9 {
			t.Fatalf("k=%d: %v, brute force %v", k, got, d[k])
		}
	}
}

func TestHodgesLehmannFindsTheShift(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	x := make([]float64, 300)
	y := make([]float64, 300)
	for i := range x {
		x[i] = r.NormFloat64()
		y[i] = r.NormFloat64() + 0.5
	}
	est, lo, hi := HodgesLehmann(x, y, 0.98)
	if math.Abs(est-0.5) > 0.15 || !(lo < est && est < hi) || lo > 0.5 || hi < 0.5 {
		t.Fatalf("shift 0.5: est %.3f [%.3f, %.3f]", est, lo, hi)
	}
}

func TestFisherGreater(t *testing.T) {
	// 0 of 1000 against 3 of 1000: P = C(1000,3)/C(2000,3)
	want := 1000.0 * 999 * 998 / (2000 * 1999 * 1998)
	if p := FisherGreater(3, 1000, 0, 1000); math.Abs(p-want) > 1e-9 {
		t.Fatalf("p = %v, want %v", p, want)
	}
	if p := FisherGreater(0, 1000, 3, 1000); p < 0.999999 {
		t.Fatalf("fewer errors: p = %v, want 1", p)
	}
}

// The judge-quality targets, at default settings, with 500 samples per
// group (the canary's min_samples is what a team sets to reach them).
func TestJudgeQualityTargets(t *testing.T) {
	cfg := Config{}
	if power := LatencyFailRate(cfg, 1.2, 500, 300, 11); power < 0.95 {
		t.Errorf("+20%% latency detected in %.1f%% of trials, want ≥ 95%%", 100*power)
	}
	if ff := LatencyFailRate(cfg, 1.0, 500, 1000, 12); ff > 0.01 {
		t.Errorf("identical distributions failed in %.1f%% of trials, want ≤ 1%%", 100*ff)
	}
	if r := Errors(cfg, 0, 1000, 3, 1000); r.Classification != High {
		t.Errorf("0 against 3 errors in 1000 requests: %s (p %.3f)", r.Classification, r.P)
	}
	if r := Errors(cfg, 3, 1000, 3, 1000); r.Classification != Pass {
		t.Errorf("3 against 3 errors: %s", r.Classification)
	}
}

func TestNoDataAndScore(t *testing.T) {
	if r := Latency(Config{}, []float64{1, 2}, []float64{1, 2}, Increase); r.Classification != NoData {
		t.Fatalf("2 samples: %s", r.Classification)
	}
	pass, high, none := Result{Classification: Pass}, Result{Classification: High}, Result{Classification: NoData}
	if s := Score([]Metric{{Result: pass}, {Result: pass}, {Result: high}, {Result: pass}}); s != 75 {
		t.Fatalf("3 of 4 pass: %v", s)
	}
	if s := Score([]Metric{{Result: pass}, {Result: high, Critical: true}}); s != 0 {
		t.Fatalf("failed critical: %v", s)
	}
	if s := Score([]Metric{{Result: pass}, {Result: none}}); s != 0 {
		t.Fatalf("half without data: %v", s)
	}
	if s := Score([]Metric{{Result: pass, Weight: 3}, {Result: high, Weight: 1}}); s != 75 {
		t.Fatalf("weighted: %v", s)
	}
}
