package anytime

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// draw counts k instances a group of n requests each; each instance's rate
// is p (canary: p+shift) plus a uniform placement offset in ±spread.
func draw(r *rand.Rand, k, n int, p, shift, spread float64) Clustered {
	var c Clustered
	for g, base := range []bool{true, false} {
		for i := range k {
			q := p + spread*(2*r.Float64()-1)
			if !base {
				q += shift
			}
			e := 0
			for range n {
				if r.Float64() < q {
					e++
				}
			}
			c.Add(base, fmt.Sprintf("%d-%d", g, i), float64(e), float64(n))
		}
	}
	return c
}

func TestPlacementEstimate(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	// uniform ±0.1 has σ² = 0.01/3; averaged over many draws the moment
	// estimate is unbiased
	var sum float64
	const runs = 400
	for range runs {
		c := draw(r, 5, 2000, 0.5, 0, 0.1)
		s2, df := c.Placement()
		if df != 8 {
			t.Fatalf("df %d, want 8", df)
		}
		sum += s2
	}
	if got, want := sum/runs, 0.01/3; math.Abs(got-want) > 0.1*want {
		t.Fatalf("mean σ̂² %.5f, want %.5f", got, want)
	}
	// no spread: σ̂² near 0 (floored), and one instance a group: nothing
	var c Clustered
	c.Add(true, "a", 10, 100)
	c.Add(false, "b", 20, 100)
	if s2, df := c.Placement(); s2 != 0 || df != 0 {
		t.Fatalf("one instance a group: σ̂² %g df %d", s2, df)
	}
	if _, _, _, ok := c.Standout(0.01, 1); ok {
		t.Fatal("Standout claims a verdict with one instance a group")
	}
}

// TestStandoutLevel: with the same version on both sides, however far
// apart placement sets the instances, the guard passes a difference at
// most about alpha of the time; a plain two-proportion test (what the
// judge had) passes it most of the time. A shift of the version itself
// stands out.
func TestStandoutLevel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const trials, alpha = 2000, 0.01
	for _, spread := range []float64{0, 0.05, 0.2} {
		guard, plain := 0, 0
		for range trials {
			c := draw(r, 5, 1000, 0.5, 0, spread)
			if tt, crit, _, ok := c.Standout(alpha, 1); ok && tt > crit {
				guard++
			}
			est, v := c.Rates().Diff()
			if est/math.Sqrt(v) > NormQuantile(1-alpha) {
				plain++
			}
		}
		t.Logf("spread ±%.2f: guard %.2f%%, plain z-test %.2f%%", spread, 100*float64(guard)/trials, 100*float64(plain)/trials)
		if float64(guard)/trials > 2*alpha {
			t.Errorf("spread ±%.2f: the guard passed %d of %d same-version differences", spread, guard, trials)
		}
		if spread == 0.2 && float64(plain)/trials < 0.2 {
			t.Errorf("the plain test passed only %d of %d: the scenario does not test placement", plain, trials)
		}
	}
	hit := 0
	for range 200 {
		if tt, crit, _, ok := draw(r, 5, 1000, 0.5, 0.15, 0.05).Standout(alpha, 1); ok && tt > crit {
			hit++
		}
	}
	if hit < 190 {
		t.Errorf("a +15 point shift of the version stood out %d of 200 times", hit)
	}
}

func TestClusteredBounded(t *testing.T) {
	var c Clustered
	for i := range 3 * MaxInstances {
		c.Add(true, fmt.Sprint(i), 1, 2)
	}
	if b, _ := c.Instances(); b != MaxInstances+1 || c.Base[Other].N != float64(2*2*MaxInstances) {
		t.Fatalf("%d instances kept, other %v", b, c.Base[Other])
	}
	if !c.Valid() {
		t.Fatal("bounded counts are not valid")
	}
	c.Base["x"] = Count{Events: 3, N: 2}
	if c.Valid() {
		t.Fatal("more events than trials is valid")
	}
	c.Base["x"] = Count{}
	if c.Valid() {
		t.Fatal("an instance of no trials is valid (its rate is 0/0)")
	}
}
