package release

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redblack/redblack/shared/events"
)

// The release state machine, written down once. Every service that moves
// a record does it through Record.Step with the event it acts on; nothing
// else lists which phases a step applies from.

// Actor is a service that steps releases: the table names one for each
// rule, and Record.Step refuses a step by any other.
type Actor string

// The services that step releases (the intake's acceptance is not a step:
// it creates the record, Store.Accept).
const (
	ByCanary      Actor = "canary"
	ByProvisioner Actor = "provisioner"
	ByRouter      Actor = "router"
	ByWatchdog    Actor = "watchdog"
)

// Actors lists every Actor.
var Actors = []Actor{ByCanary, ByProvisioner, ByRouter, ByWatchdog}

// ErrNotOwner: a service stepped a phase the table gives to another. It is
// a bug in the caller, never a race: the step changes nothing.
var ErrNotOwner = errors.New("not the owner of this step")

// Rule is one transition: on event On, a release in one of From moves to
// To; it is By's step.
type Rule struct {
	From []Phase
	On   events.Kind
	To   Phase
	By   Actor
}

// PhaseInfo describes a phase: the deadline that bounds it (the name of a
// strategy.deadlines field; "" for a terminal phase) and what a rollback
// from it must undo.
type PhaseInfo struct {
	Phase    Phase
	Deadline string
	Undo     string
}

// Phases lists every phase in order, with its deadline and its undo.
var Phases = []PhaseInfo{
	{PhaseAccepted, "canary", "nothing runs yet: release the lock"},
	{PhaseCanary, "canary", "take the canary's and baseline's share back, destroy both groups"},
	{PhaseLaunching, "launch", "destroy the new group (it has no traffic)"},
	{PhaseSwitching, "switch", "if the new group has the traffic, give it back to the previous group first; destroy the new group"},
	{PhaseBaking, "bake", "all traffic back to the previous group, then destroy the new group"},
	{PhaseRolling, "batch", "the replaced slots back to the previous group, batch by batch in reverse, then destroy the new group"},
	{PhaseCompleted, "", "while the previous group is kept: all traffic back to it, then destroy the new group"},
	{PhaseRollingBack, "rollback", "(this is the undo) restore, then destroy the release's groups"},
	{PhaseRolledBack, "", ""},
	{PhaseRejected, "", ""},
	{PhaseAborted, "", ""},
}

// beforeRollback are the phases a rollback may start from.
var beforeRollback = []Phase{PhaseAccepted, PhaseCanary, PhaseLaunching, PhaseSwitching, PhaseBaking, PhaseCompleted}

// Rules is the table: phase × event → next phase, and whose step it is.
var Rules = []Rule{
	{From: []Phase{PhaseAccepted}, On: events.ReleaseAccepted, To: PhaseCanary, By: ByProvisioner},
	{From: []Phase{PhaseAccepted, PhaseCanary}, On: events.CanaryPassed, To: PhaseLaunching, By: ByProvisioner},
	{From: []Phase{PhaseLaunching}, On: events.ClusterReady, To: PhaseSwitching, By: ByRouter},
	{From: []Phase{PhaseSwitching}, On: events.TrafficSwitched, To: PhaseBaking, By: ByWatchdog},
	{From: []Phase{PhaseBaking}, On: events.Baked, To: PhaseCompleted, By: ByProvisioner},
	{From: beforeRollback, On: events.RollbackRequested, To: PhaseRollingBack, By: ByRouter},
	{From: beforeRollback[:2], On: events.CanaryFailed, To: PhaseRollingBack, By: ByRouter},
	{From: beforeRollback[:2], On: events.Calibrated, To: PhaseRollingBack, By: ByRouter},
	{From: []Phase{PhaseRollingBack}, On: events.TrafficRestored, To: PhaseRolledBack, By: ByProvisioner},
	{From: append(beforeRollback[:5:5], PhaseRollingBack, PhaseRolling), On: events.AbortRequested, To: PhaseAborted, By: ByProvisioner},
	// the rolling flow (strategy rolling): the provisioner drives it, the
	// canary service's verify of each batch is a rolling.batch.done or a
	// rolling.rollback
	{From: []Phase{PhaseAccepted}, On: events.RollingBatchStarted, To: PhaseRolling, By: ByProvisioner},
	{From: []Phase{PhaseAccepted, PhaseRolling}, On: events.RollingRollback, To: PhaseRollingBack, By: ByProvisioner},
	{From: []Phase{PhaseRolling}, On: events.RollbackRequested, To: PhaseRollingBack, By: ByProvisioner},
	{From: []Phase{PhaseRolling}, On: events.ReleaseCompleted, To: PhaseCompleted, By: ByProvisioner},
	{From: []Phase{PhaseRollingBack}, On: events.RolledBack, To: PhaseRolledBack, By: ByProvisioner},
}

// Next is where a release in phase from goes on event on (ok false: the
// event does not apply there).
func Next(from Phase, on events.Kind) (to Phase, rule Rule, ok bool) {
	for _, r := range Rules {
		if r.On == on && slices.Contains(r.From, from) {
			return r.To, r, true
		}
	}
	return from, Rule{}, false
}

// Info is the description of phase p.
func Info(p Phase) PhaseInfo {
	for _, i := range Phases {
		if i.Phase == p {
			return i
		}
	}
	return PhaseInfo{Phase: p}
}

// Step moves the record on event on, as the table says, for the service
// by. An event that already brought it where it is (a redelivery) is a
// no-op; one that does not apply in its phase returns ErrStale and changes
// nothing; a step the table gives to another service returns ErrNotOwner
// and changes nothing.
func (r *Record) Step(by Actor, on events.Kind, at time.Time) error {
	to, rule, ok := Next(r.Phase, on)
	if !ok {
		var taken *Rule
		for i, rule := range Rules {
			if rule.On == on && rule.To == r.Phase {
				if rule.By == by {
					return nil // already taken
				}
				taken = &Rules[i]
			}
		}
		if taken != nil {
			return notOwner(r, by, *taken)
		}
		return fmt.Errorf("%w: %s is %s; %s applies only from %s", ErrStale, r.ID, r.Phase, on.Type(), fromOf(on))
	}
	if rule.By != by {
		return notOwner(r, by, rule)
	}
	r.Enter(to, at)
	return nil
}

func notOwner(r *Record, by Actor, rule Rule) error {
	return fmt.Errorf("release: %w: %s stepped %s (%s) on %s, which is %s's step", ErrNotOwner, by, r.ID, r.Phase, rule.On.Type(), rule.By)
}

func fromOf(on events.Kind) string {
	var out []string
	for _, rule := range Rules {
		if rule.On == on {
			for _, p := range rule.From {
				out = append(out, string(p))
			}
		}
	}
	if len(out) == 0 {
		return "no phase"
	}
	return strings.Join(out, ", ")
}

// Explain is the path a record took through the table: each transition of
// its history with the event and the service that made it.
func Explain(r Record) []string {
	var out []string
	prev := Phase("")
	for i, t := range r.History {
		line := fmt.Sprintf("%s  %s", t.At.Format("15:04:05.000"), t.Phase)
		if i == 0 {
			line += "  (intake: the request took the lock)"
		} else {
			found := false
			for _, rule := range Rules {
				if rule.To == t.Phase && slices.Contains(rule.From, prev) {
					line += fmt.Sprintf("  ← %s on %s (%s's step)", prev, rule.On.Type(), rule.By)
					found = true
					break
				}
			}
			if !found {
				line += fmt.Sprintf("  ← %s: NOT IN THE TABLE", prev)
			}
		}
		if d := Info(t.Phase).Deadline; d != "" {
			line += "; deadline: strategy.deadlines." + d
		}
		out = append(out, line)
		prev = t.Phase
	}
	return out
}

// Mermaid is the table as a mermaid state diagram (the README's copy is
// checked against it by a test).
func Mermaid() string {
	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	fmt.Fprintf(&b, "    [*] --> %s: requested (intake)\n", PhaseAccepted)
	for _, r := range Rules {
		for _, f := range r.From {
			fmt.Fprintf(&b, "    %s --> %s: %s (%s)\n", f, r.To, strings.TrimPrefix(r.On.Type(), "io.redblack.release."), r.By)
		}
	}
	fmt.Fprintf(&b, "    [*] --> %s: refused (intake)\n", PhaseRejected)
	for _, p := range Phases {
		if p.Phase.Final() {
			fmt.Fprintf(&b, "    %s --> [*]\n", p.Phase)
		}
	}
	return b.String()
}
