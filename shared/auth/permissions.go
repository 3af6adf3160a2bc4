package auth

import (
	"fmt"

	"github.com/nats-io/jwt/v2"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// Publishes lists, per service, the events and commands it emits: the only
// stream subjects its user may publish on (for every service name).
var Publishes = map[string][]events.Kind{
	"canary": {
		events.ReleaseRequested, events.ReleaseAccepted, events.ReleaseRejected, events.CanaryStarted,
		events.CanaryPassed, events.CanaryFailed, events.Calibrated, events.RollbackRequested, events.AbortRequested,
		events.TrafficSet, events.RollingBatchDone, events.RollingRollback,
	},
	"provisioner": {
		events.ServerGroupCreated, events.ServerGroupReady, events.ServerGroupResized, events.ServerGroupFailed,
		events.ServerGroupDestroyed, events.ServerGroupRefused, events.InstanceStarted, events.InstanceUp,
		events.InstanceDown, events.InstanceTerminated, events.InstanceReplaced, events.InstanceCrashLoop,
		events.ServerGroupCreate, events.ServerGroupResize, events.ServerGroupDestroy,
		events.ClusterReady, events.RolledBack, events.ReleaseCompleted, events.ReleaseAborted,
		events.RollbackRequested, events.TrafficSet, events.TrafficSwitch, events.TrafficRestore,
		events.RollingBatchStarted, events.RollingBatchHealthy, events.RollingRollback,
	},
	"router": {
		events.TrafficChanged, events.TrafficRefused, events.TrafficSwitched, events.TrafficRestored,
		events.TrafficLagging, events.RollbackRequested,
	},
	"watchdog": {
		events.RollbackRequested, events.Baked, events.ReleaseStuck,
	},
	"chaos": {
		events.ChaosTerminating, events.ChaosTerminated, events.ChaosSkipped, events.ChaosWouldTerminate,
		events.InstanceTerminate,
	},
}

// Writes lists, per service, the key-value buckets it writes.
var Writes = map[string][]string{
	"canary":      {topology.BucketReleases, topology.BucketServices, topology.BucketAnalysis},
	"provisioner": {topology.BucketReleases, topology.BucketInstances},
	"router":      {topology.BucketReleases, topology.BucketRoutes},
	"watchdog":    {topology.BucketReleases},
	"chaos":       {topology.BucketChaos},
}

// Subscribes lists, per service, the events it awaits on core NATS (not
// through a stream consumer).
var Subscribes = map[string][]events.Kind{
	"chaos": {events.InstanceTerminated},
	// a rolling release's weights and switch: the router's answer, once
	// the edge has them too
	"provisioner": {events.TrafficChanged, events.TrafficSwitched},
}

// metricsPublishers may publish samples, each as its own publisher
// (subjects.Sample).
var metricsPublishers = map[string]string{"router": subjects.PublisherRouter}

// jsRead is the JetStream API a reader needs: stream and consumer info,
// consumers of its own, their messages, direct gets of KV entries.
var jsRead = []string{
	"$JS.API.INFO",
	"$JS.API.STREAM.INFO.*",
	"$JS.API.STREAM.NAMES",
	"$JS.API.STREAM.MSG.GET.*",
	"$JS.API.DIRECT.GET.>",
}

// ServicePermissions are the subjects of one of the five services:
//   - publish: the events and commands it emits (Publishes), its buckets
//     (Writes), the JetStream API to consume and ack, its micro endpoints'
//     replies (as responses only), dead letters;
//   - subscribe: its own inbox prefix, the micro discovery subjects and its
//     own endpoints.
//
// It may not create, update or delete streams: `up` (the admin) owns the
// topology.
func ServicePermissions(name string) (jwt.Permissions, error) {
	kinds, ok := Publishes[name]
	if !ok {
		return jwt.Permissions{}, fmt.Errorf("auth: no service %q", name)
	}
	var p jwt.Permissions
	for _, k := range kinds {
		p.Pub.Allow.Add(k.Subject("*"))
	}
	for _, b := range Writes[name] {
		p.Pub.Allow.Add("$KV." + b + ".>")
	}
	if publisher, ok := metricsPublishers[name]; ok {
		p.Pub.Allow.Add(subjects.Sample("*", "*", publisher, "*"))
	}
	p.Pub.Allow.Add(jsRead...)
	p.Pub.Allow.Add(
		"$JS.API.CONSUMER.>", // its durables and ordered consumers (KV watchers)
		"$JS.ACK.>",
		"$JS.FC.>",
		subjects.DomainDLQ+".>",
		subjects.RouterApplied,
		subjects.CallerApplied,
		"$SRV.>",
	)
	id := Identity{TeamRedblack, name}
	p.Sub.Allow.Add(id.InboxPrefix()+".>", "$SRV.>", "redblack."+name+".>")
	for _, k := range Subscribes[name] {
		p.Sub.Allow.Add(k.Subject("*"))
	}
	if name == "router" {
		p.Sub.Allow.Add(subjects.RouterApplied)
	}
	if name == "provisioner" {
		// the local provisioners of several hosts call each other's
		// providers (services/provisioner/hosts)
		p.Pub.Allow.Add("redblack.provisioner.host.>")
	}
	if name == "canary" {
		p.Sub.Allow.Add(subjects.APIPrefix + ".>")
	}
	// micro endpoints and router.applied answer requests of other users
	p.Resp = &jwt.ResponsePermission{MaxMsgs: 1}
	return p, nil
}

// TeamPermissions are a team user's subjects:
//   - publish: its own API subjects (redblack.api.<team>.<user>.*.<svc>)
//     for each of its services, the analysis template verbs for any name,
//     and pulling from consumers on RELEASES and FLEET;
//   - subscribe: its own inbox prefix.
//
// It creates no consumer itself: the server cannot check a push
// consumer's deliver subject (it is in the create request's body), so a
// team's consumers are made for it by the team API's consumer verb, which
// filters them to its services and delivers only under its inbox prefix.
// The services' durables are denied by name: pulling from one would take
// its deliveries.
func TeamPermissions(id Identity, services []string) jwt.Permissions {
	var p jwt.Permissions
	for _, s := range services {
		p.Pub.Allow.Add(subjects.API(id.Team, id.User, "*", s))
	}
	// analysis templates: any name, stored under the caller's team
	p.Pub.Allow.Add(subjects.API(id.Team, id.User, subjects.VerbAnalysisApply, "*"), subjects.API(id.Team, id.User, subjects.VerbAnalysisGet, "*"))
	for _, stream := range []string{topology.StreamReleases, topology.StreamFleet} {
		p.Pub.Allow.Add(
			"$JS.API.CONSUMER.MSG.NEXT."+stream+".*",
			"$JS.API.CONSUMER.INFO."+stream+".*",
		)
	}
	denyDurables(&p)
	p.Sub.Allow.Add(id.InboxPrefix() + ".>")
	return p
}

// CallerPermissions are the subjects of the discovery client
// (shared/discovery/lb) embedded in an instance of one service that calls
// the downstream services:
//   - publish: metrics samples of the downstream services only, as its
//     own publisher (subjects.CallerPublisher, its user's name); the
//     JetStream API to read the routes and instances buckets (their
//     streams' info, direct gets, its own ordered consumers); answers to
//     the routers' CallerApplied ping and to micro requests;
//   - subscribe: its own inbox prefix, subjects.CallerApplied and the
//     micro subjects of "redblack-caller" only, so that it can never
//     answer as a router.
//
// It writes no bucket, emits no event and reads no stream but the two
// buckets': a compromised instance can skew the samples of the services
// it calls, and nothing else.
func CallerPermissions(id Identity, downstream []string) jwt.Permissions {
	var p jwt.Permissions
	for _, s := range downstream {
		p.Pub.Allow.Add(subjects.Sample(s, "*", id.User, "*"))
	}
	p.Pub.Allow.Add("$JS.API.INFO", "$JS.FC.>")
	for _, b := range []string{topology.BucketRoutes, topology.BucketInstances} {
		stream := "KV_" + b
		p.Pub.Allow.Add(
			"$JS.API.STREAM.INFO."+stream,
			"$JS.API.DIRECT.GET."+stream+".>",
			"$JS.API.CONSUMER.CREATE."+stream,
			"$JS.API.CONSUMER.CREATE."+stream+".>",
			"$JS.API.CONSUMER.DELETE."+stream+".*",
			"$JS.API.CONSUMER.INFO."+stream+".*",
		)
	}
	// micro: its own service's subjects ($SRV.PING, $SRV.PING.<name>,
	// $SRV.PING.<name>.<id>, and INFO and STATS alike) and endpoints
	const name = "redblack-caller"
	p.Pub.Allow.Add("$SRV.>")
	p.Sub.Allow.Add(id.InboxPrefix()+".>", subjects.CallerApplied, "$SRV.*", "$SRV.*."+name, "$SRV.*."+name+".*", "redblack.caller.>")
	p.Resp = &jwt.ResponsePermission{MaxMsgs: 1}
	return p
}

// AdminPermissions are every subject of the account but the samples': no
// one can pose as a router or a discovery client with the admin's creds
// (the samples decide releases, and only their publishers' users may
// publish them).
func AdminPermissions() jwt.Permissions {
	var p jwt.Permissions
	p.Pub.Deny.Add(subjects.DomainMetrics + ".>")
	return p
}

// AuditorPermissions read every stream and bucket and write nothing: no
// event, no KV entry, no command, no pull from a service's durable.
func AuditorPermissions(id Identity) jwt.Permissions {
	var p jwt.Permissions
	p.Pub.Allow.Add(jsRead...)
	p.Pub.Allow.Add(
		"$JS.API.STREAM.LIST",
		"$JS.API.CONSUMER.CREATE.*.*",
		"$JS.API.CONSUMER.CREATE.*.*.>",
		"$JS.API.CONSUMER.MSG.NEXT.*.*",
		"$JS.API.CONSUMER.INFO.*.*",
		"$JS.FC.>",
	)
	denyDurables(&p)
	p.Sub.Allow.Add(id.InboxPrefix() + ".>")
	return p
}

func denyDurables(p *jwt.Permissions) {
	for stream, names := range topology.Durables {
		for _, d := range names {
			p.Pub.Deny.Add(
				"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+d,
				"$JS.API.CONSUMER.CREATE."+stream+"."+d,
				"$JS.API.CONSUMER.CREATE."+stream+"."+d+".>",
			)
		}
	}
}
