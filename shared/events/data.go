package events

import "time"

// Artifact is what a server group runs. The local provider runs Command (an
// argv array) with Env added; the aws provider launches AMI (or an existing
// launch template version).
type Artifact struct {
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// EnvSecrets names secrets the provisioner looks up and adds to the
	// environment (variable → secret name): only names, so that the audit
	// stream, which cannot be purged, never holds a secret value.
	EnvSecrets            map[string]string `json:"env_secrets,omitempty"`
	AMI                   string            `json:"ami,omitempty"`
	InstanceType          string            `json:"instance_type,omitempty"`
	UserData              string            `json:"user_data,omitempty"`
	LaunchTemplate        string            `json:"launch_template,omitempty"`
	LaunchTemplateVersion string            `json:"launch_template_version,omitempty"`
}

// IsZero reports whether no field of the artifact is set.
func (a Artifact) IsZero() bool {
	return len(a.Command) == 0 && len(a.Env) == 0 && len(a.EnvSecrets) == 0 && a.AMI == "" && a.InstanceType == "" &&
		a.UserData == "" && a.LaunchTemplate == "" && a.LaunchTemplateVersion == ""
}

// Requested is a team's request to release a new version of a service. A
// bare body of this shape may be published to release.<service>.requested;
// the intake wraps it in an event.
type Requested struct {
	Service     string   `json:"service,omitempty"`
	Version     string   `json:"version"`
	Artifact    Artifact `json:"artifact,omitempty"`
	RequestedBy string   `json:"requested_by,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	// Calibrate asks for an A/A calibration instead of a release: two
	// groups of the production version judged against each other with the
	// service's strategy; nothing is released.
	Calibrate bool `json:"calibrate,omitempty"`
	// Duration overrides the canary duration of a calibration ("10m").
	Duration string `json:"duration,omitempty"`
}

// Accepted is emitted by the intake when it takes the service's lock.
type Accepted struct {
	Service  string   `json:"service"`
	Version  string   `json:"version"`
	Group    string   `json:"group"`
	Sequence int      `json:"sequence"`
	Artifact Artifact `json:"artifact"`
	// Previous is the group that served before this release ("" for the first).
	Previous string `json:"previous,omitempty"`
}

// Rejected is emitted for every request the intake refuses.
type Rejected struct {
	Service string `json:"service,omitempty"`
	Version string `json:"version,omitempty"`
	Reason  string `json:"reason"`
	// Field is the field at fault: "body", "subject", "service", "version",
	// "artifact", or a JSON field name.
	Field string `json:"field"`
	// InProgress is the release id holding the service's lock, if that is
	// why the request was refused.
	InProgress string `json:"in_progress,omitempty"`
}

// CanaryStart announces the baseline and canary groups of a release.
type CanaryStart struct {
	Service  string `json:"service"`
	Baseline string `json:"baseline"`
	Canary   string `json:"canary"`
	Weight   int    `json:"weight"`
}

// MetricReport is the judge's verdict on one metric.
type MetricReport struct {
	Name            string `json:"name"`
	Critical        bool   `json:"critical,omitempty"`
	BaselineSamples int    `json:"baseline_samples"`
	CanarySamples   int    `json:"canary_samples"`
	// BaselineMedian and CanaryMedian are each group's figure: the error
	// rate, or the latency quantile in ms.
	BaselineMedian float64 `json:"baseline_median"`
	CanaryMedian   float64 `json:"canary_median"`
	// Estimate, Low and High: the compared difference (canary − baseline:
	// of error rates, or of the shares of requests past the latency
	// thresholds) and its confidence sequence.
	Estimate float64 `json:"estimate,omitempty"`
	Low      float64 `json:"low"`
	High     float64 `json:"high"`
	// Evidence against the canary at the last look, and the most it ever
	// reached (Peak): 1 fails the metric.
	Evidence float64 `json:"evidence,omitempty"`
	Peak     float64 `json:"peak,omitempty"`
	// Classification is Pass, High, Low or NoData.
	Classification string `json:"classification"`
	// A metric of an analysis template: its template and provider, the
	// queries it read (rendered for the canary group), its kind, the
	// interval of its readings and how many there were, and why it is
	// inconclusive (its last reading failed, or too little data).
	Template     string        `json:"template,omitempty"`
	Provider     string        `json:"provider,omitempty"`
	Query        string        `json:"query,omitempty"`
	Kind         string        `json:"kind,omitempty"`
	Interval     time.Duration `json:"interval,omitempty"`
	Readings     int           `json:"readings,omitempty"`
	Inconclusive string        `json:"inconclusive,omitempty"`
	Optional     bool          `json:"optional,omitempty"`
	// Placement (the router's metrics): how many instances each group's
	// requests came from, and the spread between instances the judge
	// measured — the standard deviation of the instances' rates (of
	// errors, or of requests past the baseline's quantile) and its degrees
	// of freedom (0: one instance a group, the version and the instance
	// cannot be told apart).
	BaselineInstances int     `json:"baseline_instances,omitempty"`
	CanaryInstances   int     `json:"canary_instances,omitempty"`
	PlacementSD       float64 `json:"placement_sd,omitempty"`
	PlacementDF       int     `json:"placement_df,omitempty"`
}

// CanaryResult is the data of canary.passed and canary.failed.
type CanaryResult struct {
	Service string         `json:"service"`
	Canary  string         `json:"canary"`
	Score   float64        `json:"score"`
	Reason  string         `json:"reason,omitempty"`
	Metrics []MetricReport `json:"metrics,omitempty"`
	// Looks is how many looks the judge took; Confidence its level over
	// the whole canary.
	Looks      int     `json:"looks,omitempty"`
	Confidence float64 `json:"confidence,omitempty"`
	// DroppedSamples is how many metrics samples the judge refused as
	// evidence that cannot be real (logged with their subjects).
	DroppedSamples uint64 `json:"dropped_samples,omitempty"`
}

// Calibration is the data of calibrated: what the judge decided on two
// groups of the same version and how close it came to failing them.
type Calibration struct {
	Service string `json:"service"`
	// Passed is the judge's verdict (a calibration that fails says the
	// strategy would fail healthy releases of this service).
	Passed bool `json:"passed"`
	// Closest is the strongest evidence any metric reached against the
	// second group (1 fails it), and ClosestMetric that metric.
	Closest       float64       `json:"closest"`
	ClosestMetric string        `json:"closest_metric,omitempty"`
	Duration      time.Duration `json:"duration_ns"`
	Report        CanaryResult  `json:"report"`
}

// (abort.requested carries a Rollback: who asks and why; aborted a
// RollbackDone: the group left with the traffic.)

// Stuck is the data of stuck: a release past its phase's deadline that has
// not ended (a rollback that cannot finish), raised every minute until it
// does, while the watchdog re-drives it.
type Stuck struct {
	Service string        `json:"service"`
	Phase   string        `json:"phase"`
	For     time.Duration `json:"for_ns"`
	// Redriven is how many times the step was driven again.
	Redriven int    `json:"redriven"`
	Reason   string `json:"reason"`
}

// Cluster is the data of cluster.ready.
type Cluster struct {
	Service   string `json:"service"`
	Group     string `json:"group"`
	Instances int    `json:"instances"`
}

// Traffic is the data of traffic.switched and traffic.restored.
type Traffic struct {
	Service  string         `json:"service"`
	Active   string         `json:"active"`
	Previous string         `json:"previous,omitempty"`
	Weights  map[string]int `json:"weights,omitempty"`
	Revision uint64         `json:"revision,omitempty"`
}

// TrafficLag is the data of traffic.lagging: the discovery clients (by id)
// that had not applied revision Revision of the service's route when the
// router stopped waiting for them after Waited.
type TrafficLag struct {
	Service  string        `json:"service"`
	Revision uint64        `json:"revision"`
	Callers  []string      `json:"callers"`
	Waited   time.Duration `json:"waited_ns"`
}

// Bake is the data of baked.
type Bake struct {
	Service  string        `json:"service"`
	Group    string        `json:"group"`
	Duration time.Duration `json:"duration_ns"`
}

// Rollback is the data of rollback.requested.
type Rollback struct {
	Service string `json:"service"`
	Group   string `json:"group,omitempty"`
	Reason  string `json:"reason"`
	By      string `json:"by"`
}

// RollbackDone is the data of rolled_back.
type RollbackDone struct {
	Service  string `json:"service"`
	Group    string `json:"group"`
	Restored string `json:"restored,omitempty"`
	Reason   string `json:"reason"`
}

// RollingBatch is the data of the rolling flow's events: one batch of a
// rolling release (Batch of Batches, counted from 1), the slots it
// replaces from the Previous group to the release's Group, how long it took
// so far, and the verify's report (done, and a rollback on a failed
// verify). A rollback's Reason says which gate failed. Up, on healthy, is
// how long the batch's slots took from its start to be up in the new group
// (their old processes' stop, the new ones' start and health checks).
// Count is how many instances the batch replaces; Slots names them for a
// release with slots (none for a stateless one, strategy.rolling.stateless,
// which rolls by count).
type RollingBatch struct {
	Service  string        `json:"service"`
	Group    string        `json:"group"`
	Previous string        `json:"previous,omitempty"`
	Batch    int           `json:"batch"`
	Batches  int           `json:"batches"`
	Slots    []string      `json:"slots"`
	Count    int           `json:"count"`
	Took     time.Duration `json:"took_ns,omitempty"`
	Up       time.Duration `json:"up_ns,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Report   *CanaryResult `json:"report,omitempty"`
}

// Completion is the data of completed.
type Completion struct {
	Service string `json:"service"`
	Group   string `json:"group"`
	Version string `json:"version"`
}

// ServerGroupCommand asks the provisioner to create, resize or destroy a group.
type ServerGroupCommand struct {
	Service  string   `json:"service"`
	Group    string   `json:"group"`
	Version  string   `json:"version,omitempty"`
	Capacity int      `json:"capacity"`
	Artifact Artifact `json:"artifact,omitempty"`
	Role     string   `json:"role,omitempty"` // production, baseline or canary
	// Host is the host to run the group on, for local provisioners on
	// several hosts; empty, the provisioner places it.
	Host string `json:"host,omitempty"`
	// Stateful groups run stable slots (strategy rolling): Slots are
	// those it starts with, and Capacity is their number.
	Stateful  bool  `json:"stateful,omitempty"`
	Slots     []int `json:"slots,omitempty"`
	SlotCount int   `json:"slot_count,omitempty"`
}

// InstanceCommand asks the provisioner to terminate one instance.
type InstanceCommand struct {
	Service  string `json:"service"`
	Group    string `json:"group"`
	Instance string `json:"instance"`
	Reason   string `json:"reason,omitempty"`
}

// ServerGroup is the data of every servergroup.* event.
type ServerGroup struct {
	Service  string `json:"service"`
	Group    string `json:"group"`
	Capacity int    `json:"capacity"`
	Up       int    `json:"up,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Instance is the data of every instance.* event.
type Instance struct {
	Service  string `json:"service"`
	Group    string `json:"group"`
	Instance string `json:"instance"`
	Address  string `json:"address,omitempty"`
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
}

// Chaos is the data of every chaos.* event.
type Chaos struct {
	Service  string `json:"service"`
	Group    string `json:"group,omitempty"`
	Instance string `json:"instance,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Leashed  bool   `json:"leashed,omitempty"`
}

// TrafficCommand asks the router to set weights (Weights) or to switch all
// traffic to Group; in traffic.refused, Reason says why it would not.
type TrafficCommand struct {
	Service string         `json:"service"`
	Weights map[string]int `json:"weights,omitempty"`
	Group   string         `json:"group,omitempty"`
	Reason  string         `json:"reason,omitempty"`
}
