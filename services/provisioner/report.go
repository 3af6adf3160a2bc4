package provisioner

import (
	"context"
	"time"

	"github.com/rs/zerolog"

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
	i := c.Instance
	log := s.log.With().Str(logging.FieldService, i.Service).Str(logging.FieldServerGroup, i.Group).Str("instance", i.ID).Logger()
	s.updateDiscovery(c, log)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k := changeKinds[c.Type]
	data := events.Instance{Service: i.Service, Group: i.Group, Instance: i.ID, Address: i.Address, State: i.State, Reason: c.Reason}
	if err := s.publish(ctx, events.NewID(), k, i.Service, data); err != nil {
		log.Warn().Err(err).Str("event", k.Type()).Msg("publish")
	}
	log.Debug().Str("change", string(c.Type)).Str("reason", c.Reason).Msg("instance")
	s.progress(ctx, c)
}

// discoveryWrite bounds the attempts at one discovery write: long enough
// for a stream to elect a new leader after a node's loss (about 4 s).
const discoveryWrite = 15 * time.Second

// updateDiscovery writes the change to the instances bucket, trying again
// within discoveryWrite while the failure is transient. A group is ready
// when discovery counts its instances up (confirm), so an entry lost to a
// node's death would hold its group back until the heartbeat's next put.
func (s *Service) updateDiscovery(c fleet.Change, log zerolog.Logger) {
	i := c.Instance
	key := discovery.Key(i.Service, i.Group, i.ID)
	ctx, cancel := context.WithTimeout(context.Background(), discoveryWrite)
	defer cancel()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		var err error
		switch c.Type {
		case fleet.Started, fleet.Up, fleet.Down:
			_, err = s.instances.Put(ctx, key, entry(i).Encode())
		case fleet.Terminated:
			err = s.instances.Delete(ctx, key)
		}
		if err == nil {
			return
		}
		if !natsx.Transient(err) || ctx.Err() != nil {
			log.Warn().Err(err).Msg("discovery update")
			return
		}
		log.Warn().Err(err).Msg("discovery update; trying again")
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

func entry(i fleet.Instance) discovery.Entry {
	return discovery.Entry{ID: i.ID, Service: i.Service, Group: i.Group, Version: i.Version, Address: i.Address, State: i.State, Started: i.Started, LastHealth: i.LastHealth, Slot: i.Slot, SlotCount: i.SlotCount}
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
		gs, err := s.own.ListGroups(ctx, "")
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

// progress reacts to a change of a pending group's instance.
func (s *Service) progress(ctx context.Context, c fleet.Change) {
	s.mu.Lock()
	p, ok := s.pending[c.Instance.Group]
	if ok && c.Reason != "" {
		p.lastWhy = c.Reason
	}
	if ok {
		// the ups seen here say when to ask discovery (check); discovery,
		// where routers look, decides
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
