package release_test

import (
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/release"
)

// ownerOf is the service whose step k is from phase from: the table's,
// or, where k does not apply there, that of a rule on k that ends in from
// (a redelivery), else of any rule on k.
func ownerOf(from release.Phase, k events.Kind) release.Actor {
	if _, rule, ok := release.Next(from, k); ok {
		return rule.By
	}
	var any release.Actor = release.ByRouter
	for _, r := range release.Rules {
		if r.On == k && r.To == from {
			return r.By
		}
		if r.On == k {
			any = r.By
		}
	}
	return any
}

// kinds are every event the table names and some it must ignore.
func kinds() []events.Kind {
	var ks []events.Kind
	for _, r := range release.Rules {
		if !slices.Contains(ks, r.On) {
			ks = append(ks, r.On)
		}
	}
	return append(ks, events.ReleaseRequested, events.ReleaseCompleted, events.RolledBack, events.CanaryStarted)
}

// TestMachineProperties: from every reachable phase, every event either
// moves the record to the table's next phase (one transition more) or
// leaves it exactly as it was; a terminal phase never moves (but for a
// rollback after completion, while the replaced group is kept); every
// non-terminal phase has a deadline and a way to a terminal phase; every
// phase the table reaches is described.
func TestMachineProperties(t *testing.T) {
	reach := []release.Phase{release.PhaseAccepted}
	for i := 0; i < len(reach); i++ {
		for _, k := range kinds() {
			r := release.Record{ID: "x"}
			r.Enter(reach[i], time.Unix(0, 0))
			before := len(r.History)
			to, _, ok := release.Next(reach[i], k)
			err := r.Step(ownerOf(reach[i], k), k, time.Unix(1, 0))
			switch {
			case ok && (err != nil || r.Phase != to || len(r.History) != before+1):
				t.Errorf("%s on %s: %v, now %s", reach[i], k.Type(), err, r.Phase)
			case !ok && (r.Phase != reach[i] || len(r.History) != before):
				t.Errorf("%s on %s moved to %s", reach[i], k.Type(), r.Phase)
			case !ok && err != nil && !errors.Is(err, release.ErrStale):
				t.Errorf("%s on %s: %v", reach[i], k.Type(), err)
			case ok && reach[i].Final() && !(reach[i] == release.PhaseCompleted && k == events.RollbackRequested):
				// the one exception: a completed release is rolled back
				// while the group it replaced is kept
				t.Errorf("terminal %s moves on %s", reach[i], k.Type())
			}
			if ok && !slices.Contains(reach, to) {
				reach = append(reach, to)
			}
		}
	}
	for _, p := range reach {
		info := release.Info(p)
		if p.Final() {
			continue
		}
		if info.Deadline == "" || info.Undo == "" {
			t.Errorf("%s has no deadline or no undo: %+v", p, info)
		}
		if !endsTerminal(p, nil) {
			t.Errorf("no path from %s to a terminal phase", p)
		}
	}
	if !slices.Contains(reach, release.PhaseCompleted) || !slices.Contains(reach, release.PhaseRolledBack) {
		t.Errorf("reachable: %v", reach)
	}
}

func endsTerminal(p release.Phase, seen []release.Phase) bool {
	if p.Final() {
		return true
	}
	if slices.Contains(seen, p) {
		return false
	}
	for _, k := range kinds() {
		if to, _, ok := release.Next(p, k); ok && endsTerminal(to, append(seen, p)) {
			return true
		}
	}
	return false
}

// TestRandomHistories: seeded sequences of events, duplicated and out of
// order, never move a record outside the table and never out of a
// terminal phase; the history only ever records table transitions.
func TestRandomHistories(t *testing.T) {
	ks := kinds()
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 2000 {
		rec := release.Record{ID: "x"}
		rec.Enter(release.PhaseAccepted, time.Unix(0, 0))
		for i := range 30 {
			prev := rec.Phase
			k := ks[r.IntN(len(ks))]
			_ = rec.Step(ownerOf(rec.Phase, k), k, time.Unix(int64(i), 0))
			if prev.Final() && rec.Phase != prev && !(prev == release.PhaseCompleted && k == events.RollbackRequested) {
				t.Fatalf("trial %d: terminal %s moved to %s", trial, prev, rec.Phase)
			}
		}
		for _, line := range release.Explain(rec) {
			if strings.Contains(line, "NOT IN THE TABLE") {
				t.Fatalf("trial %d: %s", trial, line)
			}
		}
	}
}

var update = flag.Bool("update", false, "rewrite the README's diagram from the table")

// TestReadmeDiagram: the README's state diagram is the table's (regenerate:
// go test ./shared/release -run TestReadmeDiagram -update).
func TestReadmeDiagram(t *testing.T) {
	const path = "../../README.md"
	const begin, end = "<!-- release-machine: generated from shared/release by its tests -->\n```mermaid\n", "```\n<!-- /release-machine -->"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README has no generated diagram between %q and %q", begin, end)
	}
	want := release.Mermaid()
	if got := s[i+len(begin) : j]; got != want {
		if *update {
			if err := os.WriteFile(path, []byte(s[:i+len(begin)]+want+s[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("README's diagram differs from the table; run go test ./shared/release -run TestReadmeDiagram -update\nwant:\n%s", want)
	}
}
