package metrics

import (
	"testing"
	"time"

	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// TestBehindAsksTheLeader: behind, Follow's check on a silent consumer,
// says "behind" exactly when the stream holds a message on the subjects
// that the reader has not read: after the last sequence read, or since
// its start time with nothing read.
func TestBehindAsksTheLeader(t *testing.T) {
	s := testkit.Start(t)
	js := s.JS(t)
	ctx := testkit.Context(t, 10*time.Second)
	var seqs []uint64
	for range 2 {
		ack, err := js.Publish(ctx, subjects.Sample("hello", "hello-v001", subjects.PublisherRouter, "r1"), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	subj := []string{subjects.GroupSamples("hello", "hello-v001")} // a wildcard, as Follow's
	nc := js.Conn()
	for _, c := range []struct {
		what  string
		subj  []string
		read  uint64
		since time.Time
		want  bool
	}{
		{"read the first of two", subj, seqs[0], time.Time{}, true},
		{"read both", subj, seqs[1], time.Time{}, false},
		{"nothing read, from a minute ago", subj, 0, time.Now().Add(-time.Minute), true},
		{"nothing read, from a minute on", subj, 0, time.Now().Add(time.Minute), false},
		{"nothing read, only new ones", subj, 0, time.Time{}, false},
		{"a subject with no message", []string{subjects.GroupSamples("hello", "hello-v002")}, 0, time.Now().Add(-time.Minute), false},
		{"one of two subjects ahead", []string{subjects.GroupSamples("hello", "hello-v002"), subjects.GroupSamples("hello", "hello-v001")}, seqs[0], time.Time{}, true},
	} {
		if got := behind(ctx, nc, topology.StreamMetrics, c.subj, c.read, c.since); got != c.want {
			t.Errorf("%s: behind %v, want %v", c.what, got, c.want)
		}
	}
}
