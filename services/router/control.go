package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/loop"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/routing"
	"github.com/redblack/redblack/shared/subjects"
)

// AppliedSubject: every router (no queue group) answers a request with a
// service name in the body with the routes revision its live table holds.
const AppliedSubject = subjects.RouterApplied

// Source is the CloudEvents source of the router's events.
const Source = "redblack/router"

// Applied is a router's (or a discovery client's) answer on AppliedSubject.
type Applied = routing.Applied

// callerService is the micro name discovery clients register under
// (shared/discovery/lb): a switch waits for them as for routers.
const callerService = "redblack-" + routing.CallerMicro

// scatter sends a request to every responder of subject and gathers the
// answers that come within wait, or until want have come (0: no limit).
func scatter(nc *nats.Conn, subject string, body []byte, wait time.Duration, want int) ([][]byte, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, body); err != nil {
		return nil, err
	}
	var out [][]byte
	deadline := time.Now().Add(wait)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return out, nil
		}
		out = append(out, m.Data)
		if want > 0 && len(out) >= want {
			return out, nil
		}
	}
}

// RouterMemory is how long a router that answered once is still waited
// for (Config.RouterMemory's default): one whose connection is being
// re-established (its node died) misses a ping, yet serves its last table;
// a switch announced without it could send its users to a group its table
// has no instance of.
const RouterMemory = 10 * time.Second

// CallerWait is Config.CallerWait's default: a discovery client learns a
// route change as fast as a router does (both watch the bucket), so one
// still behind after this is stuck or cut off, and the release goes on.
const CallerWait = 5 * time.Second

// trackRouters keeps s.routers and s.callers fresh between commits: every
// 2 s it asks every router and discovery client for its id.
func (s *Service) trackRouters(ctx context.Context) {
	loop.Every(ctx, 2*time.Second, func() {
		for _, k := range []peers{s.routerPeers(), s.callerPeers()} {
			answers, err := scatter(s.nc, k.subject, nil, 200*time.Millisecond, 0)
			if err != nil {
				continue
			}
			now := time.Now()
			s.mu.Lock()
			for _, b := range answers {
				var a Applied
				if json.Unmarshal(b, &a) == nil && a.Router != "" {
					k.seen[a.Router] = now
				}
			}
			s.mu.Unlock()
		}
	})
}

// peers are the routers or the callers: the subject they answer on, when
// each id last answered, and how long one that stopped answering is still
// waited for.
type peers struct {
	subject string
	seen    map[string]time.Time
	memory  time.Duration
}

// routerPeers are the routers, remembered for RouterMemory: one whose NATS
// connection is being re-established serves its last table meanwhile.
func (s *Service) routerPeers() peers {
	return peers{AppliedSubject, s.routers, s.cfg.RouterMemory}
}

// callerPeers are the discovery clients, waited for only while they
// answer: a caller stops answering when its instance is destroyed (a
// canary's, an old group's), and remembering it would hold every switch
// soon after for the whole CallerWait.
func (s *Service) callerPeers() peers {
	return peers{subjects.CallerApplied, s.callers, 0}
}

// applied asks the peers which of them have applied revision rev of the
// service (with up instances of group routable when group is set). It
// returns those that have not, among the live ones (answering now, or seen
// within k.memory), and how many have. Called without s.mu.
func (s *Service) applied(k peers, service string, rev uint64, group string, up, pinged int) (behind []string, done int, err error) {
	s.mu.Lock()
	for id, seen := range k.seen {
		if time.Since(seen) > k.memory {
			delete(k.seen, id) // gone (a restarted router has a new id)
		}
	}
	want := max(pinged, len(k.seen))
	s.mu.Unlock()
	if want == 0 {
		return nil, 0, nil
	}
	answers, err := scatter(s.nc, k.subject, []byte(service), 200*time.Millisecond, want)
	if err != nil {
		return nil, 0, err
	}
	now := time.Now()
	ok := map[string]bool{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range answers {
		var a Applied
		if json.Unmarshal(b, &a) != nil || a.Router == "" {
			continue
		}
		k.seen[a.Router] = now
		if a.Revision >= rev && (group == "" || a.Up[group] >= up) {
			ok[a.Router] = true
		}
	}
	for id := range k.seen {
		if !ok[id] {
			behind = append(behind, id)
		}
	}
	sort.Strings(behind)
	return behind, len(ok), nil
}

// waitApplied returns once every live router has a table built from at
// least revision rev of the service's route and, when group is set, with at
// least up of its instances routable. Live: answering now, or seen within
// RouterMemory. Discovery clients that answer are waited for the same way,
// but for CallerWait at most once the routers are done: it returns the
// callers still behind then.
//
// The routers apply the change as soon as it is in the bucket; only its
// announcement waits (and what follows it: a group destroyed after a
// restore, say).
func (s *Service) waitApplied(ctx context.Context, service string, rev uint64, group string, up int) ([]string, error) {
	// every connected router answers a ping within a few ms on one machine
	// or a LAN; 50 ms bounds the wait
	routerPings, err := scatter(s.nc, "$SRV.PING.redblack-router", nil, 50*time.Millisecond, 0)
	if err != nil {
		return nil, err
	}
	callerPings, err := scatter(s.nc, "$SRV.PING."+callerService, nil, 50*time.Millisecond, 0)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.routers[s.cfg.ID] = time.Now()
	s.mu.Unlock()
	var routersDone time.Time
	for {
		routers, doneRouters, err := s.applied(s.routerPeers(), service, rev, group, up, max(len(routerPings), 1))
		if err != nil {
			return nil, err
		}
		if len(routers) == 0 && doneRouters >= len(routerPings) {
			callers, doneCallers, err := s.applied(s.callerPeers(), service, rev, group, up, len(callerPings))
			if err != nil {
				return nil, err
			}
			if len(callers) == 0 && doneCallers >= len(callerPings) {
				return nil, nil
			}
			if routersDone.IsZero() {
				routersDone = time.Now()
			}
			if time.Since(routersDone) >= s.cfg.CallerWait {
				if unnamed := len(callerPings) - doneCallers - len(callers); unnamed > 0 {
					callers = append(callers, fmt.Sprintf("(%d more that answer the ping but not %s)", unnamed, subjects.CallerApplied))
				}
				return callers, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("routers %v have not applied revision %d of %s", routers, rev, service)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// handle applies a traffic command.
func (s *Service) handle(ctx context.Context, msg jetstream.Msg) error {
	ev, err := events.Decode(msg.Data())
	if err != nil {
		return natsx.Permanent(err)
	}
	var c events.TrafficCommand
	if err := ev.DecodeData(&c); err != nil {
		return natsx.Permanent(err)
	}
	p, err := subjects.Parse(msg.Subject())
	if err != nil || p.Service != c.Service {
		return natsx.Permanent(fmt.Errorf("router: command for %q on %s", c.Service, msg.Subject()))
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err = s.command(ctx, ev.ID, ev.ReleaseID, ev.Type, c)
	if errors.Is(err, release.ErrStale) {
		s.log.Info().Str(logging.FieldService, c.Service).Str(logging.FieldRelease, ev.ReleaseID).Err(err).Msg("traffic command skipped")
		return nil
	}
	return err
}

// releaseInFlight is why a traffic command by hand is refused now: a
// release of service holds its lock ("" when none does). A switch by hand
// in a bake would leave the release to complete on a group users are not
// served by; the caller aborts the release first (`traffic … --abort-release`).
func (s *Service) releaseInFlight(ctx context.Context, service string) (string, error) {
	l, _, err := s.releases.Lock(ctx, service)
	if errors.Is(err, release.ErrNotFound) {
		return "", nil
	}
	if err != nil && !errors.Is(err, release.ErrCorrupt) {
		return "", err
	}
	return fmt.Sprintf("release %s of %s is in flight (since %s): a change by hand would leave its record false; abort it first (redblack traffic … --abort-release, or redblack abort %s)",
		l.Release, service, l.Since.Format(time.RFC3339), l.Release), nil
}

// command applies a traffic command; cause derives the ids of the events it
// publishes. It returns the reason of a refusal ("" if applied); a refusal
// is published as traffic.refused.
func (s *Service) command(ctx context.Context, cause, releaseID, k string, c events.TrafficCommand) (string, error) {
	log := s.log.With().Str(logging.FieldService, c.Service).Logger()
	var change func(*routes.Route) error
	var err error
	up := 0
	refuse := func(why string) (string, error) {
		log.Warn().Str(logging.FieldServerGroup, c.Group).Str("reason", why).Msg("traffic command refused")
		c.Reason = why
		return why, s.publish(ctx, cause+":refused", events.TrafficRefused, c.Service, releaseID, c)
	}
	if releaseID == "" { // by hand: never under a release in flight, whose record it would make false
		why, err := s.releaseInFlight(ctx, c.Service)
		if err != nil {
			return "", err
		}
		if why != "" {
			return refuse(why)
		}
	}
	switch k {
	case events.TrafficSwitch.Type():
		var why string
		if up, why, err = s.guardSwitch(ctx, c.Service, c.Group); err != nil {
			return "", err
		}
		if why != "" {
			return refuse(why)
		}
		change = func(r *routes.Route) error {
			if releaseID != "" { // fenced by the release's phase: a switch never lands after a restore
				rec, _, err := s.releases.Get(ctx, releaseID)
				if err != nil {
					return err
				}
				want := release.PhaseSwitching
				if rec.IsRolling() { // the last batch verified: the new group becomes the active one
					want = release.PhaseRolling
				}
				if err := rec.Expect(want); err != nil {
					return err
				}
			}
			for g := range r.Weights {
				r.Weights[g] = 0
			}
			r.Weights[c.Group] = routes.MaxWeight
			if r.Active != c.Group {
				r.Previous, r.Active = r.Active, c.Group
			}
			r.Reason = "switch to " + c.Group
			if slice := c.Weights[r.Previous]; releaseID != "" && r.Previous != "" && slice > 0 && slice < routes.MaxWeight {
				// the bake's same-time reference: the old group keeps a slice
				r.Weights[r.Previous], r.Weights[c.Group] = slice, routes.MaxWeight-slice
				r.Reason = fmt.Sprintf("switch to %s; %s keeps %d‰ as the bake's reference", c.Group, r.Previous, slice)
			}
			return nil
		}
	case events.TrafficRestore.Type():
		// all traffic back to the previous group at once, guarded like a
		// switch but for any instance up: the old group is where users are
		// safest, never a group with none
		prev := s.routeOf(c.Service).RestoreTarget()
		if prev == "" {
			return refuse("no previous group to restore")
		}
		c.Group = prev
		var n int
		if n, _, err = s.guard(ctx, c.Service, prev); err != nil {
			return "", err
		}
		if n == 0 {
			return refuse(fmt.Sprintf("%s has no instance up", prev))
		}
		up = min(n, max(s.capacityOf(c.Service), 1))
		change = func(r *routes.Route) error {
			g, err := r.Restore()
			r.Reason, c.Group = "restore "+g, g
			return err
		}
	case events.TrafficSet.Type():
		if err := (routes.Route{Weights: c.Weights}).Validate(); err != nil || len(c.Weights) == 0 {
			if err != nil {
				return refuse(err.Error())
			}
			return refuse("weights must name groups with 0..1000")
		}
		// only this service's groups, and traffic only to groups with an
		// instance up: a set never blackholes a service
		for g, w := range c.Weights {
			if svc, _, _, err := release.ParseGroup(g); err != nil || svc != c.Service {
				return refuse(fmt.Sprintf("%s is not a server group of %s", g, c.Service))
			}
			if w == 0 {
				continue
			}
			ids, err := discovery.Up(ctx, s.instances, c.Service, g)
			if err != nil {
				return "", err
			}
			if len(ids) == 0 {
				return refuse(fmt.Sprintf("%s has no instance up: no traffic to it", g))
			}
		}
		change = func(r *routes.Route) error {
			if releaseID != "" { // fenced by the release's phase: a command redelivered late changes nothing
				rec, _, err := s.releases.Get(ctx, releaseID)
				if err != nil {
					return err
				}
				if rec.Phase.Final() {
					return fmt.Errorf("%w: weights for %s, which has ended (%s)", release.ErrStale, releaseID, rec.Phase)
				}
				for _, g := range []string{rec.Canary, rec.Baseline} {
					if c.Weights[g] > 0 && rec.Phase != release.PhaseCanary {
						return fmt.Errorf("%w: a share for %s while %s is %s", release.ErrStale, g, releaseID, rec.Phase)
					}
				}
			}
			for g, w := range c.Weights {
				r.Weights[g] = w
			}
			r.Reason = "set weights"
			return r.Validate()
		}
	default:
		return "", natsx.Permanent(fmt.Errorf("router: %s is not a traffic command", k))
	}
	out := events.TrafficChanged
	switch k {
	case events.TrafficSwitch.Type():
		out = events.TrafficSwitched
	case events.TrafficRestore.Type():
		out = events.TrafficRestored
	}
	return "", s.commit(ctx, cause, releaseID, c.Service, c.Group, up, change, out)
}

// commit writes a route change, waits until every live router has applied
// it (with at least up instances of group routable), lets the groups that
// lost their traffic drain, and announces it as out.
func (s *Service) commit(ctx context.Context, cause, releaseID, service, group string, up int, change func(*routes.Route) error, out events.Kind) error {
	before := s.routeOf(service)
	route, rev, err := routes.Update(ctx, s.routesKV, service, func(r *routes.Route) error {
		if err := change(r); err != nil {
			return err
		}
		return s.prune(ctx, r)
	})
	if err != nil {
		return err
	}
	lagging, err := s.waitApplied(ctx, service, rev, group, up)
	if err != nil {
		return err // retried: the update is idempotent
	}
	if len(lagging) > 0 {
		s.log.Warn().Str(logging.FieldService, service).Uint64("revision", rev).Strs("callers", lagging).Dur("waited", s.cfg.CallerWait).Msg("discovery clients have not applied the change: announced without them")
		lag := events.TrafficLag{Service: service, Revision: rev, Callers: lagging, Waited: s.cfg.CallerWait}
		if err := s.publish(ctx, cause+":lagging", events.TrafficLagging, service, releaseID, lag); err != nil {
			return err
		}
	}
	if s.cfg.Edge != nil {
		if err := s.cfg.Edge.Apply(ctx, service, route.Weights); err != nil {
			return err // retried: the weights are set whole each time
		}
	}
	go s.drain(before, route)
	s.log.Info().Str(logging.FieldService, service).Uint64("revision", rev).Interface("weights", route.Weights).Msg("traffic applied by every router")
	data := events.Traffic{Service: service, Active: route.Active, Previous: route.Previous, Weights: route.Weights, Revision: rev}
	return s.publish(ctx, cause+":"+out.Name, out, service, releaseID, data)
}

// prune drops from a route the groups that are gone: weight 0, neither
// active nor previous, and no instance in discovery (the provisioner
// forgets a group's instances when it destroys it). Without it every
// destroyed group stayed in the route for ever, and got a zero sample every
// interval.
func (s *Service) prune(ctx context.Context, r *routes.Route) error {
	for g, w := range r.Weights {
		if w != 0 || g == r.Active || g == r.Previous {
			continue
		}
		keys, err := natsx.Keys(ctx, s.instances, discovery.Key(r.Service, g, "*"))
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			delete(r.Weights, g)
		}
	}
	return nil
}

func (s *Service) capacityOf(service string) int { return s.follower.Capacity(service) }

func (s *Service) routeOf(service string) routes.Route { return s.follower.Route(service) }

// guard refuses a switch to a group with fewer up instances than the
// service's capacity (Spinnaker's traffic guard). It counts in the instances
// bucket itself, not in this router's view, which may lag. It returns the
// count, the reason for a refusal ("" for none), or an error to retry.
func (s *Service) guard(ctx context.Context, service, group string) (int, string, error) {
	ids, err := discovery.Up(ctx, s.instances, service, group)
	if err != nil {
		return 0, "", err
	}
	up := len(ids)
	want := max(s.capacityOf(service), 1)
	if up < want {
		return up, fmt.Sprintf("%s has %d healthy instances, fewer than the capacity %d of %s", group, up, want, service), nil
	}
	return want, "", nil
}

// SwitchGuardWait bounds how long a switch to a group that looks short of
// instances is checked again before it is refused. The group's entries
// are stored before its cluster.ready, but a listing made just after a
// node's restart can be served by the stream replica on that node while it
// still catches up, which knows none of them yet. A refused switch is a
// rollback, so a stale read is worth a few seconds in the refusal path;
// the path of a switch that passes does not wait.
const SwitchGuardWait = 5 * time.Second

// guardSwitch is guard for a switch: a refusal stands only if it holds
// for SwitchGuardWait.
func (s *Service) guardSwitch(ctx context.Context, service, group string) (int, string, error) {
	deadline := time.Now().Add(SwitchGuardWait)
	for {
		up, why, err := s.guard(ctx, service, group)
		if err != nil || why == "" || time.Now().After(deadline) {
			return up, why, err
		}
		select {
		case <-ctx.Done():
			return up, why, nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// drain waits until the groups that lost their traffic have no request in
// flight, then closes idle upstream connections.
func (s *Service) drain(before, after routes.Route) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		busy := false
		for _, b := range s.reg.Backends() {
			if before.Weights[b.Group] > 0 && after.Weights[b.Group] == 0 && b.Inflight.Load() > 0 {
				busy = true
			}
		}
		if !busy {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.proxy.CloseIdle()
}

func (s *Service) publish(ctx context.Context, id string, k events.Kind, service, releaseID string, data any) error {
	ev, err := events.NewWithID(id, Source, k, service, releaseID, data)
	if err != nil {
		return natsx.Permanent(err)
	}
	_, err = natsx.Publish(ctx, s.js, k.Subject(service), ev)
	return err
}
