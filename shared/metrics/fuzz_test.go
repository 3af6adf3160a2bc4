package metrics

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// FuzzSample: no bytes on a metrics subject may panic the decoder, the
// checks, or what a judge does with an admitted sample (Totals, quantiles,
// counts past a threshold).
func FuzzSample(f *testing.F) {
	f.Add([]byte(good().Encode()))
	f.Add([]byte(split().Encode()))
	f.Add([]byte(`{"service":"hello","group":"hello-v002","router":"r","start":"2026-12-01T09:59:59Z","end":"2026-12-01T10:00:00Z","requests":10,"2xx":10,"buckets_us":[100],"latency":[5,5]}`))
	f.Add([]byte(`{"service":"hello","group":"hello-v002","router":"r","start":"2026-12-01T09:59:59Z","end":"2026-12-01T10:00:00Z","requests":1000000,"2xx":1000000}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		flt := &Filter{Now: func() time.Time { return now }, Log: zerolog.Nop()}
		s, ok := flt.Admit("", b)
		var tot Totals
		tot.Add(s) // even a refused sample must not panic Totals
		_ = tot.Quantile(0.99)
		_ = HistQuantile(s.BucketsMicros, s.Latency, 0.5)
		_, _ = Above(s.BucketsMicros, s.Latency, 1000)
		if ok {
			if err := s.Validate(now); err != nil {
				t.Fatalf("admitted an invalid sample: %v", err)
			}
		}
	})
}

// FuzzTotals: any sequence of samples, valid or not, summed and asked for
// quantiles.
func FuzzTotals(f *testing.F) {
	f.Add(uint64(10), uint64(2), 3, 4, uint64(7), 2)
	f.Add(uint64(0), uint64(0), 1, 2, uint64(5), 1)
	f.Fuzz(func(t *testing.T, req, errs uint64, nb, nl int, c uint64, n int) {
		var tot Totals
		for i := range min(max(n, 0), 8) {
			nb, nl := min(max(nb+i, 0), 300), min(max(nl-i, 0), 300)
			s := Sample{Requests: req, Status5xx: errs, BucketsMicros: make([]int64, nb), Latency: make([]uint64, nl)}
			for k := range s.BucketsMicros {
				s.BucketsMicros[k] = int64(k*int(c%7)) - 3
			}
			for k := range s.Latency {
				s.Latency[k] = c + uint64(k)
			}
			tot.Add(s)
			for _, q := range []float64{0, 0.5, 0.99, 1} {
				_ = tot.Quantile(q)
				_ = HistQuantile(tot.Bounds, tot.Latency, q)
			}
			_ = tot.ErrorRate()
		}
	})
}
