package metrics

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

var now = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func good() Sample {
	g := Synthetic{ErrorRate: 0.01, MedianMs: 5, Sigma: 0.5}.Generator()
	return g.Sample(rand.New(rand.NewPCG(1, 1)), 500, "hello", "hello-v002", now.Add(-time.Second), now)
}

func TestValidate(t *testing.T) {
	if err := good().Validate(now); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*Sample){
		"no router":                  func(s *Sample) { s.Router = "" },
		"window not ordered":         func(s *Sample) { s.Start = s.End.Add(time.Second) },
		"window in the future":       func(s *Sample) { s.Start, s.End = now.Add(time.Minute), now.Add(time.Minute+time.Second) },
		"window too long":            func(s *Sample) { s.Start = s.End.Add(-time.Hour) },
		"counts without a histogram": func(s *Sample) { s.BucketsMicros, s.Latency = nil, nil },
		"arrays disagree":            func(s *Sample) { s.BucketsMicros, s.Latency = []int64{100}, []uint64{5, 5} },
		"one bound":                  func(s *Sample) { s.BucketsMicros, s.Latency = []int64{100}, []uint64{250, 250} },
		"bounds not increasing":      func(s *Sample) { s.BucketsMicros[3] = s.BucketsMicros[2] },
		"histogram does not add up":  func(s *Sample) { s.Latency[10] += 7 },
		"statuses do not add up":     func(s *Sample) { s.Status2xx += 1000 },
		"10⁶ requests, empty histogram": func(s *Sample) {
			s.Requests, s.Status2xx, s.Status5xx = 1_000_000, 1_000_000, 0
			clear(s.Latency)
		},
		"overflowing counts": func(s *Sample) { s.Requests, s.Status2xx = 1<<63, 1<<63 },
		"2⁴⁹ 2xx in a second (the issue's)": func(s *Sample) {
			s.Requests, s.Status2xx, s.Status5xx, s.ConnErrors = 1<<49, 1<<49, 0, 0
			clear(s.Latency)
			s.Latency[0] = 1 << 49
		},
		"past MaxRate in 10 s": func(s *Sample) {
			s.Start = s.End.Add(-10 * time.Second)
			s.Requests, s.Status2xx, s.Status5xx, s.ConnErrors = 10*MaxRate+1, 10*MaxRate+1, 0, 0
			clear(s.Latency)
			s.Latency[0] = 10*MaxRate + 1
		},
	}
	for name, mut := range cases {
		s := good()
		mut(&s)
		if err := s.Validate(now); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// split gives good()'s counts to two instances: a its first 24 buckets'
// responses, b the rest and all its errors.
func split() Sample {
	s := good()
	a, b := make([]uint64, len(s.Latency)), slices.Clone(s.Latency)
	var na uint64
	for i := range 24 {
		a[i], b[i] = s.Latency[i], 0
		na += a[i]
	}
	s.Instances = []InstanceSample{
		{ID: "i-a", Requests: na, Latency: Sparse(a)},
		{ID: "i-b", Requests: s.Requests - na, Errors: s.Errors(), Latency: Sparse(b)},
	}
	return s
}

func TestValidateInstances(t *testing.T) {
	if err := split().Validate(now); err != nil {
		t.Fatal(err)
	}
	if s := split(); !slices.Equal(s.Instances[0].Histogram(len(s.Latency)), func() []uint64 {
		h := make([]uint64, len(s.Latency))
		copy(h, s.Latency[:24])
		return h
	}()) {
		t.Fatal("Histogram does not expand Sparse")
	}
	cases := map[string]func(*Sample){
		"requests do not add up":     func(s *Sample) { s.Instances[0].Requests++ },
		"errors do not add up":       func(s *Sample) { s.Instances[1].Errors-- },
		"more errors than requests":  func(s *Sample) { s.Instances[0].Errors, s.Instances[1].Errors = s.Instances[0].Requests+1, 0 },
		"named twice":                func(s *Sample) { s.Instances[1].ID = s.Instances[0].ID },
		"no id":                      func(s *Sample) { s.Instances[0].ID = "" },
		"histograms do not add up":   func(s *Sample) { s.Instances[0].Latency[0][1]-- },
		"bucket out of range":        func(s *Sample) { s.Instances[0].Latency[0][0] = 1 << 40 },
		"buckets out of order":       func(s *Sample) { l := s.Instances[1].Latency; l[0], l[1] = l[1], l[0] },
		"more responses than served": func(s *Sample) { s.Instances[0].Requests, s.Instances[1].Requests = 1, s.Requests-1 },
		"too many instances": func(s *Sample) {
			for i := range MaxInstances {
				s.Instances = append(s.Instances, InstanceSample{ID: fmt.Sprintf("z%d", i)})
			}
		},
	}
	for name, mut := range cases {
		s := split()
		mut(&s)
		if err := s.Validate(now); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	s := good()
	if _, err := DecodeStrict("metrics.hello.hello-v002.router.sim", s.Encode()); err != nil {
		t.Fatal(err)
	}
	for subject, want := range map[string]string{
		"metrics.hello.hello-v003.router.sim":      "came on",        // another group's subject
		"metrics.hello.hello-v002.router.other":    "claims router",  // the body claims another publisher's id
		"metrics.hello.hello-v002.caller-api.fake": "claims router",  // a caller posing as the router "sim"
		"metrics.hello.hello-v002":                 "is not metrics", // no publisher (the old subject)
		"metrics.hello.hello-v002.router.sim.x":    "is not metrics",
	} {
		if _, err := DecodeStrict(subject, s.Encode()); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", subject, err, want)
		}
	}
	for _, bad := range []string{`{"service":"hello","bogus":1}`, `[`, `{} {}`, strings.Repeat("x", MaxSampleBytes+1)} {
		if _, err := DecodeStrict("", []byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%.40q: %v", bad, err)
		}
	}
}

func TestFilter(t *testing.T) {
	f := &Filter{Now: func() time.Time { return now }, Log: zerolog.Nop(), Known: func(_, id string) bool { return id == "sim" }}
	subj := "metrics.hello.hello-v002.router.sim"
	s := good()
	if _, ok := f.Admit(subj, s.Encode()); !ok {
		t.Fatal("a good sample was dropped")
	}
	if _, ok := f.Admit(subj, s.Encode()); ok {
		t.Fatal("the same window was counted twice")
	}
	if f.Dropped() != 0 {
		t.Fatalf("a repeat of a counted window counted as a fault: %d", f.Dropped())
	}
	over := good()
	over.Start, over.End = now.Add(-500*time.Millisecond), now.Add(500*time.Millisecond)
	if _, ok := f.Admit(subj, over.Encode()); ok || f.Dropped() != 1 {
		t.Fatalf("an overlapping window: dropped %d", f.Dropped())
	}
	other := good()
	other.Router = "intruder"
	other.Start, other.End = now, now.Add(time.Second)
	if _, ok := f.Admit("metrics.hello.hello-v002.router.intruder", other.Encode()); ok || f.Dropped() != 2 {
		t.Fatalf("an unknown router: dropped %d", f.Dropped())
	}
	// another publisher's sample of the same window, ahead of the router's
	// next one and even with the router's id in its body: it is that
	// publisher's (here a discovery client's, its id "sim" too), and the
	// router's own sample is still counted
	next := good()
	next.Start, next.End = now, now.Add(time.Second)
	if _, ok := f.Admit("metrics.hello.hello-v002.caller-api.sim", next.Encode()); !ok {
		t.Fatal("a caller's own sample was dropped")
	}
	if _, ok := f.Admit(subj, next.Encode()); !ok {
		t.Fatal("the next window was dropped")
	}
	// resumed from its Seen, a new filter refuses what the old one counted
	g := &Filter{Now: func() time.Time { return now.Add(time.Second) }, Log: zerolog.Nop()}
	g.Resume(f.Seen())
	if _, ok := g.Admit(subj, next.Encode()); ok {
		t.Fatal("a resumed filter counted a window again")
	}
	if since := Since(f.Seen(), now.Add(-time.Hour)); !since.Equal(now.Add(time.Second)) {
		t.Fatalf("since %s", since)
	}
	// a handler that panics drops the sample, and the filter goes on
	if !f.deliver(subj, next, func(Sample) bool { panic("boom") }) || f.Dropped() != 3 {
		t.Fatal("a panicking handler was not recovered")
	}
}

func TestHistogramHelpers(t *testing.T) {
	s := good()
	p50 := HistQuantile(s.BucketsMicros, s.Latency, 0.5)
	if p50 < 4000 || p50 > 6000 {
		t.Fatalf("p50 %.0f µs of a 5 ms median", p50)
	}
	above, below := Above(s.BucketsMicros, s.Latency, p50)
	if above+below != float64(s.Requests) || above < 200 || above > 300 {
		t.Fatalf("above %.1f below %.1f of %d at the median", above, below, s.Requests)
	}
	if HistQuantile([]int64{100}, []uint64{5, 5}, 0.5) != 0 {
		t.Fatal("unreadable bounds gave a quantile")
	}
	if a, b := Above([]int64{100}, []uint64{5, 5}, 50); a != 0 || b != 0 {
		t.Fatal("unreadable bounds gave counts")
	}
}
