package events

import "github.com/redblack/redblack/shared/subjects"

// TypePrefix starts every redblack CloudEvents type.
const TypePrefix = "io.redblack."

// Kind names one event: its domain (the first subject token) and its name
// (the subject tokens after the service), e.g. {"release", "canary.passed"}.
type Kind struct {
	Domain string
	Name   string
}

// Type is the CloudEvents type, e.g. io.redblack.release.canary.passed.
func (k Kind) Type() string { return TypePrefix + k.Domain + "." + k.Name }

// Subject is the NATS subject of this kind of event for one service.
func (k Kind) Subject(service string) string { return k.Domain + "." + service + "." + k.Name }

// String returns the type.
func (k Kind) String() string { return k.Type() }

// The release flow (DESIGN.md, "Flow of one release").
var (
	ReleaseRequested  = Kind{subjects.DomainRelease, "requested"}
	ReleaseAccepted   = Kind{subjects.DomainRelease, "accepted"}
	ReleaseRejected   = Kind{subjects.DomainRelease, "rejected"}
	CanaryStarted     = Kind{subjects.DomainRelease, "canary.started"}
	CanaryPassed      = Kind{subjects.DomainRelease, "canary.passed"}
	CanaryFailed      = Kind{subjects.DomainRelease, "canary.failed"}
	Calibrated        = Kind{subjects.DomainRelease, "calibrated"}
	ReleaseStuck      = Kind{subjects.DomainRelease, "stuck"}
	AbortRequested    = Kind{subjects.DomainRelease, "abort.requested"}
	ReleaseAborted    = Kind{subjects.DomainRelease, "aborted"}
	ClusterReady      = Kind{subjects.DomainRelease, "cluster.ready"}
	TrafficSwitched   = Kind{subjects.DomainRelease, "traffic.switched"}
	TrafficRestored   = Kind{subjects.DomainRelease, "traffic.restored"}
	Baked             = Kind{subjects.DomainRelease, "baked"}
	RollbackRequested = Kind{subjects.DomainRelease, "rollback.requested"}
	RolledBack        = Kind{subjects.DomainRelease, "rolled_back"}
	ReleaseCompleted  = Kind{subjects.DomainRelease, "completed"}
)

// The rolling flow (strategy rolling): each batch starts (the provisioner
// replaces its slots), turns healthy (its new instances passed the health
// gate), and is done (the canary service's verify passed); a failed gate is
// a rolling.rollback, after which the provisioner puts the replaced slots
// back, batch by batch in reverse, and the release ends rolled_back.
var (
	RollingBatchStarted = Kind{subjects.DomainRelease, "rolling.batch.started"}
	RollingBatchHealthy = Kind{subjects.DomainRelease, "rolling.batch.healthy"}
	RollingBatchDone    = Kind{subjects.DomainRelease, "rolling.batch.done"}
	RollingRollback     = Kind{subjects.DomainRelease, "rolling.rollback"}
)

// Fleet commands (to the provisioner) and events (from it).
var (
	ServerGroupCreate    = Kind{subjects.DomainFleet, "servergroup.create"}
	ServerGroupResize    = Kind{subjects.DomainFleet, "servergroup.resize"}
	ServerGroupDestroy   = Kind{subjects.DomainFleet, "servergroup.destroy"}
	InstanceTerminate    = Kind{subjects.DomainFleet, "instance.terminate"}
	ServerGroupCreated   = Kind{subjects.DomainFleet, "servergroup.created"}
	ServerGroupReady     = Kind{subjects.DomainFleet, "servergroup.ready"}
	ServerGroupResized   = Kind{subjects.DomainFleet, "servergroup.resized"}
	ServerGroupFailed    = Kind{subjects.DomainFleet, "servergroup.failed"}
	ServerGroupDestroyed = Kind{subjects.DomainFleet, "servergroup.destroyed"}
	ServerGroupRefused   = Kind{subjects.DomainFleet, "servergroup.refused"}
	InstanceStarted      = Kind{subjects.DomainFleet, "instance.started"}
	InstanceUp           = Kind{subjects.DomainFleet, "instance.up"}
	InstanceDown         = Kind{subjects.DomainFleet, "instance.down"}
	InstanceTerminated   = Kind{subjects.DomainFleet, "instance.terminated"}
	InstanceReplaced     = Kind{subjects.DomainFleet, "instance.replaced"}
	InstanceCrashLoop    = Kind{subjects.DomainFleet, "instance.crashloop"}
)

// Traffic commands (to the router) and the router's own traffic events.
var (
	TrafficSet     = Kind{subjects.DomainFleet, "traffic.set"}
	TrafficSwitch  = Kind{subjects.DomainFleet, "traffic.switch"}
	TrafficRestore = Kind{subjects.DomainFleet, "traffic.restore"}
	TrafficChanged = Kind{subjects.DomainFleet, "traffic.changed"}
	TrafficRefused = Kind{subjects.DomainFleet, "traffic.refused"}
	// TrafficLagging: a route change was announced without the discovery
	// clients that had not applied it within the router's wait.
	TrafficLagging = Kind{subjects.DomainFleet, "traffic.lagging"}
)

// Chaos Monkey's events.
var (
	ChaosTerminating    = Kind{subjects.DomainChaos, "terminating"}
	ChaosTerminated     = Kind{subjects.DomainChaos, "terminated"}
	ChaosSkipped        = Kind{subjects.DomainChaos, "skipped"}
	ChaosWouldTerminate = Kind{subjects.DomainChaos, "would_terminate"}
)

// registry maps each Kind to a constructor of its data type.
var registry = map[Kind]func() any{
	ReleaseRequested:  func() any { return new(Requested) },
	ReleaseAccepted:   func() any { return new(Accepted) },
	ReleaseRejected:   func() any { return new(Rejected) },
	CanaryStarted:     func() any { return new(CanaryStart) },
	CanaryPassed:      func() any { return new(CanaryResult) },
	CanaryFailed:      func() any { return new(CanaryResult) },
	Calibrated:        func() any { return new(Calibration) },
	ReleaseStuck:      func() any { return new(Stuck) },
	AbortRequested:    func() any { return new(Rollback) },
	ReleaseAborted:    func() any { return new(RollbackDone) },
	ClusterReady:      func() any { return new(Cluster) },
	TrafficSwitched:   func() any { return new(Traffic) },
	TrafficRestored:   func() any { return new(Traffic) },
	Baked:             func() any { return new(Bake) },
	RollbackRequested: func() any { return new(Rollback) },
	RolledBack:        func() any { return new(RollbackDone) },
	ReleaseCompleted:  func() any { return new(Completion) },

	RollingBatchStarted: func() any { return new(RollingBatch) },
	RollingBatchHealthy: func() any { return new(RollingBatch) },
	RollingBatchDone:    func() any { return new(RollingBatch) },
	RollingRollback:     func() any { return new(RollingBatch) },

	ServerGroupCreate:    func() any { return new(ServerGroupCommand) },
	ServerGroupResize:    func() any { return new(ServerGroupCommand) },
	ServerGroupDestroy:   func() any { return new(ServerGroupCommand) },
	InstanceTerminate:    func() any { return new(InstanceCommand) },
	ServerGroupCreated:   func() any { return new(ServerGroup) },
	ServerGroupReady:     func() any { return new(ServerGroup) },
	ServerGroupResized:   func() any { return new(ServerGroup) },
	ServerGroupFailed:    func() any { return new(ServerGroup) },
	ServerGroupDestroyed: func() any { return new(ServerGroup) },
	ServerGroupRefused:   func() any { return new(ServerGroup) },
	InstanceStarted:      func() any { return new(Instance) },
	InstanceUp:           func() any { return new(Instance) },
	InstanceDown:         func() any { return new(Instance) },
	InstanceTerminated:   func() any { return new(Instance) },
	InstanceReplaced:     func() any { return new(Instance) },
	InstanceCrashLoop:    func() any { return new(Instance) },

	TrafficSet:     func() any { return new(TrafficCommand) },
	TrafficSwitch:  func() any { return new(TrafficCommand) },
	TrafficRestore: func() any { return new(TrafficCommand) },
	TrafficChanged: func() any { return new(Traffic) },
	TrafficRefused: func() any { return new(TrafficCommand) },
	TrafficLagging: func() any { return new(TrafficLag) },

	ChaosTerminating:    func() any { return new(Chaos) },
	ChaosTerminated:     func() any { return new(Chaos) },
	ChaosSkipped:        func() any { return new(Chaos) },
	ChaosWouldTerminate: func() any { return new(Chaos) },
}

var byType = func() map[string]Kind {
	m := make(map[string]Kind, len(registry))
	for k := range registry {
		m[k.Type()] = k
	}
	return m
}()

// KindOf returns the registered Kind of a CloudEvents type.
func KindOf(typ string) (Kind, bool) {
	k, ok := byType[typ]
	return k, ok
}

// Kinds returns every registered Kind.
func Kinds() []Kind {
	out := make([]Kind, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	return out
}

// NewData returns a pointer to a zero value of the data type of k, or nil
// when k is not registered.
func NewData(k Kind) any {
	f, ok := registry[k]
	if !ok {
		return nil
	}
	return f()
}

// TypedData decodes the event's data into the Go type registered for its
// type and returns a pointer to it.
func (e Event) TypedData() (any, error) {
	k, ok := e.Kind()
	if !ok {
		return nil, ErrInvalid
	}
	v := NewData(k)
	if err := e.DecodeData(v); err != nil {
		return nil, err
	}
	return v, nil
}
