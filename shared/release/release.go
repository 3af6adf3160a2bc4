// Package release is the state of releases kept in the releases bucket: the
// per-service lock, the per-service server group counter and one record per
// release, with the keys they are stored under.
package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/rolling"
	"github.com/redblack/redblack/shared/spec"
)

// Phase is where a release is.
type Phase string

// Phases of a release, in order. Completed, RolledBack and Rejected end it.
const (
	PhaseAccepted  Phase = "accepted"
	PhaseCanary    Phase = "canary"
	PhaseLaunching Phase = "launching"
	PhaseSwitching Phase = "switching"
	PhaseBaking    Phase = "baking"
	// PhaseRolling: a rolling release replaces its slots batch by batch.
	PhaseRolling     Phase = "rolling"
	PhaseCompleted   Phase = "completed"
	PhaseRollingBack Phase = "rolling_back"
	PhaseRolledBack  Phase = "rolled_back"
	PhaseRejected    Phase = "rejected"
	// PhaseAborted: ended by an operator (redblack release abort), from any
	// phase, whatever was stuck.
	PhaseAborted Phase = "aborted"
)

// Final reports whether the phase ends a release.
func (p Phase) Final() bool {
	return p == PhaseCompleted || p == PhaseRolledBack || p == PhaseRejected || p == PhaseAborted
}

// Transition is one phase change of a release.
type Transition struct {
	Phase Phase     `json:"phase"`
	At    time.Time `json:"at"`
}

// Record is one release, stored under RecordKey(id).
type Record struct {
	ID          string          `json:"id"`
	Service     string          `json:"service"`
	Version     string          `json:"version"`
	Group       string          `json:"group"`
	Sequence    int             `json:"sequence"`
	Previous    string          `json:"previous,omitempty"`
	Artifact    events.Artifact `json:"artifact"`
	Phase       Phase           `json:"phase"`
	History     []Transition    `json:"history"`
	Outcome     string          `json:"outcome,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	RequestedBy string          `json:"requested_by,omitempty"`
	// Canary and Baseline are the canary phase's groups ("" when the
	// canary was skipped).
	Canary   string `json:"canary,omitempty"`
	Baseline string `json:"baseline,omitempty"`
	// Restored is the group a rollback gave the traffic back to.
	Restored string `json:"restored,omitempty"`
	// JudgeFrom is when the canary groups got their traffic: the canary
	// judge reads samples from then on.
	JudgeFrom time.Time `json:"judge_from,omitempty"`
	// Report is the canary judge's last look, and Verdict ("passed" or
	// "failed") its decision once taken: a copy that resumes a decided
	// canary announces it again instead of judging again.
	Report  *events.CanaryResult `json:"report,omitempty"`
	Verdict string               `json:"verdict,omitempty"`
	// Checkpoint is the canary judge's evidence at its last look, and
	// BakeCheckpoint the watchdog's (the old group's reference and the new
	// group's statistics): owned and validated by the services that write
	// them, so a restart resumes with the evidence, however long ago the
	// samples were.
	Checkpoint     json.RawMessage `json:"checkpoint,omitempty"`
	BakeCheckpoint json.RawMessage `json:"bake_checkpoint,omitempty"`
	// Calibration: an A/A run (two groups of the production version judged
	// against each other); it never launches a new group.
	Calibration bool `json:"calibration,omitempty"`
	// RequestSeq is the stream sequence of the request that made the
	// release: its redelivery is known as the same request.
	RequestSeq uint64 `json:"request_seq,omitempty"`
	// CanaryDuration overrides the strategy's canary duration (a
	// calibration's --duration).
	CanaryDuration time.Duration `json:"canary_duration_ns,omitempty"`
	// Strategy is the spec's strategy type when the release was accepted;
	// Rolling is a rolling release's progress.
	Strategy string   `json:"strategy,omitempty"`
	Rolling  *Rolling `json:"rolling,omitempty"`
}

// IsRolling reports whether the release follows the rolling flow.
func (r Record) IsRolling() bool { return r.Strategy == spec.StrategyRolling }

// Rolling is the progress of a rolling release. The provisioner plans the
// batches and moves Current, Healthy and Back; the canary service's verify
// moves Verified. Batch i (0-based) is done once Verified > i.
type Rolling struct {
	// Batches are the slots of each batch, in order.
	Batches [][]int `json:"batches"`
	// Current is the batch in hand; BatchStarted when it started (its
	// deadline runs from then), HealthyAt when it passed the health gate
	// (its verify runs from then).
	Current      int       `json:"current"`
	BatchStarted time.Time `json:"batch_started"`
	HealthyAt    time.Time `json:"healthy_at,omitempty"`
	// Healthy and Verified count the batches past the health gate and
	// past the verify.
	Healthy  int `json:"healthy"`
	Verified int `json:"verified"`
	// Back counts the batches a roll-back has put back on the previous
	// version.
	Back int `json:"back"`
	// ByCount: the service is stateless (strategy.rolling.stateless): a
	// batch shrinks the previous group and grows the new one by its size,
	// and the numbers in Batches are positions, not slots with volumes.
	ByCount bool `json:"by_count,omitempty"`
}

// SlotNames names the slots of batch b ("store-0"), nil for a release by
// count, whose batches replace instances, not slots.
func (r Rolling) SlotNames(service string, b int) []string {
	if r.ByCount || b < 0 || b >= len(r.Batches) {
		return nil
	}
	return rolling.SlotNames(service, r.Batches[b])
}

// Replaced is the slots that run the new version, or may: those of every
// batch up to the current one.
func (r Rolling) Replaced() []int {
	var out []int
	for i := 0; i <= r.Current && i < len(r.Batches); i++ {
		out = append(out, r.Batches[i]...)
	}
	return out
}

// CanaryFor is how long the release's canary is judged: the strategy's
// duration, or the request's override.
func (r Record) CanaryFor(strategy time.Duration) time.Duration {
	if r.CanaryDuration > 0 {
		return r.CanaryDuration
	}
	return strategy
}

// CanaryDeadline is how long the canary phase may last: the strategy's
// deadline, stretched for an override by as much as the strategy leaves
// beyond its own duration.
func (r Record) CanaryDeadline(duration, deadline time.Duration) time.Duration {
	if r.CanaryDuration > duration {
		return deadline + r.CanaryDuration - duration
	}
	return deadline
}

// EnteredAt is when the record first entered phase p (zero if never).
func (r Record) EnteredAt(p Phase) time.Time {
	for _, t := range r.History {
		if t.Phase == p {
			return t.At
		}
	}
	return time.Time{}
}

// ErrStale is returned when a step no longer applies to a release: it has
// moved past the phase the step expects (a late or repeated event).
var ErrStale = errors.New("release is not in a phase this step applies to")

// Expect returns ErrStale unless the record is in one of phases: for work
// done inside a phase (judging a canary, checkpointing a bake), which moves
// nothing. Moves go through Step.
func (r Record) Expect(phases ...Phase) error {
	for _, p := range phases {
		if r.Phase == p {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is %s, not %v", ErrStale, r.ID, r.Phase, phases)
}

// Enter moves the record to phase p at time at.
func (r *Record) Enter(p Phase, at time.Time) {
	r.Phase = p
	r.History = append(r.History, Transition{Phase: p, At: at.UTC()})
	if p.Final() {
		r.Outcome = string(p)
	}
}

// Lock is the per-service lock: at most one release of a service is in
// flight. It is taken with a KV Create, so only one taker can win.
type Lock struct {
	Release string    `json:"release"`
	Group   string    `json:"group"`
	Since   time.Time `json:"since"`
	// Sequence is the number of Group, taken by Store.Accept (0 for a
	// lock a rollback after completion took on a group numbered before).
	Sequence int `json:"sequence,omitempty"`
}

// Counter numbers a service's server groups and names its last release.
// Which group takes the traffic is not kept here: the route (the router's,
// routes.Route.Active) is the one source of that fact.
type Counter struct {
	Sequence    int    `json:"sequence"`
	LastRelease string `json:"last_release"`
}

// Keys in the releases bucket.
func LockKey(service string) string    { return "lock." + service }
func CounterKey(service string) string { return "seq." + service }
func RecordKey(id string) string       { return "release." + id }

// GroupKey is the entry naming the release that made a group.
func GroupKey(group string) string { return "group." + group }

// GroupName is the server group of a service's n-th release: hello-v007.
func GroupName(service string, n int) string { return fmt.Sprintf("%s-v%03d", service, n) }

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ErrInvalidID is returned for a release id that cannot be a KV key token.
var ErrInvalidID = errors.New("invalid release id")

// ValidateID checks a release id: 1–64 characters of [A-Za-z0-9_-].
func ValidateID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("%w %q: want 1-64 of [A-Za-z0-9_-]", ErrInvalidID, id)
	}
	return nil
}

// Roles of a server group.
const (
	RoleProduction = "production"
	RoleCanary     = "canary"
	RoleBaseline   = "baseline"
)

var groupRE = regexp.MustCompile(`^([a-z][a-z0-9-]{0,30})-v([0-9]{3,})(?:-(canary|baseline))?$`)

// RoleGroupName is the name of the canary or baseline group of release n:
// hello-v007-canary, hello-v007-baseline.
func RoleGroupName(service string, n int, role string) string {
	if role == RoleProduction || role == "" {
		return GroupName(service, n)
	}
	return GroupName(service, n) + "-" + role
}

// ParseGroup splits a server group name into its service, release number
// and role.
func ParseGroup(name string) (service string, n int, role string, err error) {
	m := groupRE.FindStringSubmatch(name)
	if m == nil {
		return "", 0, "", fmt.Errorf("%q is not a server group name like hello-v007 or hello-v007-canary", name)
	}
	n, _ = strconv.Atoi(m[2])
	role = m[3]
	if role == "" {
		role = RoleProduction
	}
	return m[1], n, role, nil
}
