package release_test

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/release"
)

// TestStepRefusesAnotherOwner walks the table: every rule, from each of its
// phases, moves the record for the service the table names, and for every
// other service fails with ErrNotOwner and leaves the record as it was,
// redeliveries included.
func TestStepRefusesAnotherOwner(t *testing.T) {
	for _, rule := range release.Rules {
		for _, from := range rule.From {
			for _, by := range release.Actors {
				r := release.Record{ID: "x"}
				r.Enter(from, time.Unix(0, 0))
				err := r.Step(by, rule.On, time.Unix(1, 0))
				switch {
				case by == rule.By && (err != nil || r.Phase != rule.To):
					t.Errorf("%s's step %s on %s: %v, now %s", by, from, rule.On.Type(), err, r.Phase)
				case by != rule.By && (!errors.Is(err, release.ErrNotOwner) || r.Phase != from || len(r.History) != 1):
					t.Errorf("%s stepped %s on %s (the table gives it to %s): %v, now %s", by, from, rule.On.Type(), rule.By, err, r.Phase)
				}
			}
			// a redelivery to the phase reached: a no-op for the owner,
			// refused for the others
			for _, by := range release.Actors {
				r := release.Record{ID: "x"}
				r.Enter(rule.To, time.Unix(0, 0))
				if _, _, applies := release.Next(rule.To, rule.On); applies {
					continue // a rollback after completion: not a redelivery
				}
				err := r.Step(by, rule.On, time.Unix(1, 0))
				owns := false
				for _, o := range release.Rules {
					owns = owns || (o.On == rule.On && o.To == rule.To && o.By == by)
				}
				if owns && err != nil || !owns && !errors.Is(err, release.ErrNotOwner) {
					t.Errorf("%s redelivering %s in %s: %v", by, rule.On.Type(), rule.To, err)
				}
			}
		}
	}
}

// stepKinds names the table's events as the services' code spells them.
var stepKinds = map[string]events.Kind{
	"ReleaseAccepted": events.ReleaseAccepted, "CanaryPassed": events.CanaryPassed, "ClusterReady": events.ClusterReady,
	"TrafficSwitched": events.TrafficSwitched, "Baked": events.Baked, "RollbackRequested": events.RollbackRequested,
	"CanaryFailed": events.CanaryFailed, "Calibrated": events.Calibrated, "TrafficRestored": events.TrafficRestored,
	"AbortRequested": events.AbortRequested, "RollingBatchStarted": events.RollingBatchStarted,
	"RollingRollback": events.RollingRollback, "ReleaseCompleted": events.ReleaseCompleted, "RolledBack": events.RolledBack,
}

// stepCall is one call of Record.Step in a service's code.
type stepCall struct {
	where   string
	service string // the services/<name> it is in
	by      string // the Actor constant passed ("" when not release.ByX)
	kind    string // the events.X passed ("" when not a literal kind)
}

// stepCalls finds every Step(by, kind, at) call in the services' non-test
// code below root.
func stepCalls(t *testing.T, root string) []stepCall {
	t.Helper()
	var calls []stepCall
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		service := strings.Split(filepath.ToSlash(rel), "/")[0]
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 3 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Step" {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "release" {
				return true // release.Step: the consumer's handler, not Record.Step
			}
			c := stepCall{where: fset.Position(call.Pos()).String(), service: service}
			if s, ok := call.Args[0].(*ast.SelectorExpr); ok {
				if x, ok := s.X.(*ast.Ident); ok && x.Name == "release" {
					c.by = s.Sel.Name
				}
			}
			if s, ok := call.Args[1].(*ast.SelectorExpr); ok {
				if x, ok := s.X.(*ast.Ident); ok && x.Name == "events" {
					c.kind = s.Sel.Name
				}
			}
			calls = append(calls, c)
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

// checkStepCalls holds calls to the table: each passes its own service's
// Actor constant; a literal kind is one the table gives to that service;
// and every rule is stepped somewhere in its owner's code (by its literal
// kind, or by a kind the code decides). It returns what is wrong.
func checkStepCalls(calls []stepCall) []string {
	var bad []string
	actor := func(name string) release.Actor { return release.Actor(strings.ToLower(strings.TrimPrefix(name, "By"))) }
	for _, c := range calls {
		if c.by == "" || !slices.Contains(release.Actors, actor(c.by)) {
			bad = append(bad, c.where+": Step's first argument is not a release.ByX constant")
			continue
		}
		if string(actor(c.by)) != c.service {
			bad = append(bad, c.where+": code of "+c.service+" steps as "+string(actor(c.by)))
			continue
		}
		if c.kind == "" {
			continue
		}
		k, ok := stepKinds[c.kind]
		owned := false
		for _, r := range release.Rules {
			owned = owned || ok && r.On == k && r.By == actor(c.by)
		}
		if !owned {
			bad = append(bad, c.where+": "+c.service+" steps on events."+c.kind+", which the table gives to no rule of "+c.service)
		}
	}
	for _, r := range release.Rules {
		stepped := false
		for _, c := range calls {
			k, ok := stepKinds[c.kind]
			stepped = stepped || c.service == string(r.By) && (c.kind == "" || ok && k == r.On)
		}
		if !stepped {
			bad = append(bad, "the table gives "+r.On.Type()+" to "+string(r.By)+", whose code never steps it")
		}
	}
	return bad
}

// TestStepCallersOwnTheirSteps walks the table against the code that calls
// Step: the services' sources under services/. A service that steps a
// phase the table gives to another fails here before it runs (and
// Record.Step refuses it when it runs).
func TestStepCallersOwnTheirSteps(t *testing.T) {
	for _, r := range release.Rules {
		found := false
		for _, k := range stepKinds {
			found = found || k == r.On
		}
		if !found {
			t.Fatalf("stepKinds lacks %s: add it", r.On.Type())
		}
	}
	calls := stepCalls(t, "../../services")
	if len(calls) < len(release.Rules)/2 {
		t.Fatalf("found only %d Step calls under services/: the walk is broken", len(calls))
	}
	for _, b := range checkStepCalls(calls) {
		t.Error(b)
	}
	// the check itself: a watchdog that steps the switch, and a router that
	// steps as the provisioner, are caught
	bad := append(slices.Clone(calls),
		stepCall{where: "x.go:1", service: "watchdog", by: "ByWatchdog", kind: "ClusterReady"},
		stepCall{where: "x.go:2", service: "router", by: "ByProvisioner", kind: "Baked"})
	if got := checkStepCalls(bad); len(got) != 2 {
		t.Errorf("the check found %d of 2 planted wrong steps: %v", len(got), got)
	}
}
