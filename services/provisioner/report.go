package provisioner

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
)

var changeKinds = map[fleet.ChangeType]events.Kind{
	fleet.Started:    events.InstanceStarted,
	fleet.Up:         events.InstanceUp,
	fleet.Down:       events.InstanceDown,
	fleet.Terminated: events.InstanceTerminated,
	fleet.Replaced:   events.InstanceReplaced,
	fleet.CrashLoop:  events.InstanceCrashLoop,
}

// report turns the provider's changes into FLEET events and discovery
// entries, and moves pending groups on. It drains what is queued when ctx
// ends, until the provider closes.
func (s *Service) report(ctx context.Context) {
	for {
		select {
		case c := <-s.changes:
			s.apply(c)
		case <-ctx.Done():
			for {
				select {
				case c := <-s.changes:
					s.apply(c)
				case <-time.After(200 * time.Millisecond):
					return
				}
			}
		}
	}
}

func (s *Service) apply(c fleet.Change) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	i := c.Instance
	log := s.log.With().Str(logging.FieldService, i.Service).Str(logging.FieldServerGroup, i.Group).Str("instance", i.ID).Logger()
	key := discovery.Key(i.Service, i.Group, i.ID)
	var err error
	switch c.Type {
	case fleet.Started, fleet.Up, fleet.Down:
		_, err = s.instances.Put(ctx, key, entry(i).Encode())
	case fleet.Terminated:
		err = s.instances.Delete(ctx, key)
	}
	if err != nil {
		log.Warn().Err(err).Msg("discovery update")
	}
	k := changeKinds[c.Type]
	data := events.Instance{Service: i.Service, Group: i.Group, Instance: i.ID, Address: i.Address, State: i.State, Reason: c.Reason}
	if err := s.publish(ctx, events.NewID(), k, i.Service, data); err != nil {
		log.Warn().Err(err).Str("event", k.Type()).Msg("publish")
	}
	log.Debug().Str("change", string(c.Type)).Str("reason", c.Reason).Msg("instance")
	s.progress(ctx, c)
}

func entry(i fleet.Instance) discovery.Entry {
	return discovery.Entry{ID: i.ID, Service: i.Service, Group: i.Group, Version: i.Version, Address: i.Address, State: i.State, Started: i.Started, LastHealth: i.LastHealth}
}

// heartbeat re-puts every live instance so discovery entries outlive the
// bucket's TTL only while this provisioner lives.
func (s *Service) heartbeat(ctx context.Context) {
	every := s.cfg.Topology.InstanceTTL / 3
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	// a reconnection refreshes at once: after an outage of the whole
	// cluster the entries are close to their TTL, or past it
	check := time.NewTicker(250 * time.Millisecond)
	defer check.Stop()
	reconnects := s.nc.Stats().Reconnects
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-check.C:
			if n := s.nc.Stats().Reconnects; n == reconnects || !s.nc.IsConnected() {
				continue
			} else {
				reconnects = n
			}
			s.log.Info().Msg("reconnected to NATS: discovery entries refreshed now")
		}
		gs, err := s.provider.ListGroups(ctx, "")
		if err != nil {
			continue
		}
		for _, g := range gs {
			for _, i := range g.Instances {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, _ = s.instances.Put(pctx, discovery.Key(i.Service, i.Group, i.ID), entry(i).Encode())
				cancel()
			}
		}
	}
}

// track starts waiting for a group to be all up.
func (s *Service) track(group, service string, desired int, created bool, cause, releaseID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := &pendingGroup{service: service, deadline: time.Now().Add(s.cfg.StartupTimeout), desired: desired, created: created, cause: cause, release: releaseID, up: map[string]bool{}}
	if g, err := s.provider.DescribeGroup(ctx, group); err == nil { // a resize or a resume: some are up already
		for _, i := range g.Instances {
			if i.State == discovery.StateUp && s.discoverable(ctx, i) {
				p.up[i.ID] = true
			}
		}
	}
	s.mu.Lock()
	s.pending[group] = p
	s.mu.Unlock()
	s.check(ctx, group)
}

// discoverable reports whether the instance is up in discovery: ready
// means routable, not only up at the provider.
func (s *Service) discoverable(ctx context.Context, i fleet.Instance) bool {
	e, err := s.instances.Get(ctx, discovery.Key(i.Service, i.Group, i.ID))
	if err != nil {
		return false
	}
	d, err := discovery.Decode(e.Value())
	return err == nil && d.State == discovery.StateUp
}

func (s *Service) untrack(group string) {
	s.mu.Lock()
	delete(s.pending, group)
	s.mu.Unlock()
}

// progress reacts to a change of a pending group's instance.
func (s *Service) progress(ctx context.Context, c fleet.Change) {
	s.mu.Lock()
	p, ok := s.pending[c.Instance.Group]
	if ok && c.Reason != "" {
		p.lastWhy = c.Reason
	}
	if ok {
		// count ups as reported (and written to discovery), not as the
		// provider knows them now: ready means discoverable
		if c.Type == fleet.Up {
			p.up[c.Instance.ID] = true
		} else {
			delete(p.up, c.Instance.ID)
		}
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	if c.Type == fleet.CrashLoop {
		s.failPending(ctx, c.Instance.Group, "instances crash at start: "+c.Reason)
		return
	}
	if c.Type == fleet.Up {
		s.check(ctx, c.Instance.Group)
	}
}

// check announces ready when every desired instance of a pending group has
// been reported up.
func (s *Service) check(ctx context.Context, group string) {
	s.mu.Lock()
	p, ok := s.pending[group]
	if !ok || len(p.up) < p.desired {
		s.mu.Unlock()
		return
	}
	delete(s.pending, group)
	up := len(p.up)
	s.mu.Unlock()
	s.log.Info().Str(logging.FieldService, p.service).Str(logging.FieldServerGroup, group).Int("up", up).Msg("server group ready")
	s.untilStored(ctx, "servergroup.ready of "+group, func(ctx context.Context) error {
		return s.publish(ctx, p.cause+":ready", events.ServerGroupReady, p.service, events.ServerGroup{Service: p.service, Group: group, Capacity: p.desired, Up: up})
	})
	if p.release != "" {
		s.releaseGroupReady(ctx, p.release, p.service, group, up)
	}
}

// watchPending fails groups that missed their startup deadline.
func (s *Service) watchPending(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var late []string
		s.mu.Lock()
		for name, p := range s.pending {
			if now.After(p.deadline) {
				late = append(late, name)
			}
		}
		s.mu.Unlock()
		for _, name := range late {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			g, _ := s.provider.DescribeGroup(cctx, name)
			s.failPending(cctx, name, fmt.Sprintf("not all up within %s: %d of %d up", s.cfg.StartupTimeout, g.Up(), g.Desired))
			cancel()
		}
	}
}

// failPending publishes failed for a pending group; a new group is destroyed
// so no partial group is left running.
func (s *Service) failPending(ctx context.Context, group, reason string) {
	s.mu.Lock()
	p, ok := s.pending[group]
	delete(s.pending, group)
	s.mu.Unlock()
	if !ok {
		return
	}
	if p.lastWhy != "" && !strings.Contains(reason, p.lastWhy) {
		reason += "; last: " + p.lastWhy
	}
	if p.created {
		if err := s.provider.DestroyGroup(ctx, group); err != nil {
			reason += "; destroy failed: " + err.Error()
		} else {
			reason += "; group destroyed"
			s.forget(ctx, p.service, group)
		}
	}
	s.untilStored(ctx, "servergroup.failed of "+group, func(ctx context.Context) error {
		return s.fail(ctx, p.cause, p.service, group, p.desired, reason)
	})
	if p.release != "" {
		s.releaseGroupFailed(ctx, p.release, p.service, group, reason)
	}
}

// forget removes a destroyed group's instances from discovery at once, so no
// reader sees them between the destroy and its queued terminations.
func (s *Service) forget(ctx context.Context, service, group string) {
	keys, err := natsx.Keys(ctx, s.instances, discovery.Key(service, group, "*"))
	if err != nil {
		s.log.Warn().Err(err).Str(logging.FieldServerGroup, group).Msg("forget a destroyed group's instances: they expire with the TTL instead")
		return
	}
	for _, k := range keys {
		_ = s.instances.Delete(ctx, k)
	}
}
