package provisioner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
)

const (
	// pendingCheck is how often the tracker counts each pending group's
	// instances in discovery and looks at its deadline.
	pendingCheck = 500 * time.Millisecond
	// pendingLoad is how often the tracker reads the pending groups other
	// copies stored (or a dead tracker left).
	pendingLoad = 2 * time.Second
)

// track starts waiting for a group to be all up: it stores the group as
// pending for the copy that tracks the groups (the holder of the tracker's
// or, on aws, the observer's lease; this one, if it holds it). An error is
// the step's, to be retried.
func (s *Service) track(ctx context.Context, group, service string, desired int, created bool, cause, releaseID string) error {
	p := &pendingGroup{Service: service, Group: group, Deadline: time.Now().Add(s.cfg.StartupTimeout), Desired: desired,
		Created: created, Cause: cause, Release: releaseID}
	b, _ := json.Marshal(p)
	rev, err := s.releases.PutPending(ctx, group, b)
	if err != nil {
		return fmt.Errorf("provisioner: track %s: %w", group, err)
	}
	p.rev = rev
	if s.tracking.Load() {
		s.adopt(ctx, p)
	}
	return nil
}

// adopt tracks p here (a newer entry of a group tracked already replaces
// its terms and keeps what was seen of it) and checks it at once: some
// of its instances may be up already.
func (s *Service) adopt(ctx context.Context, p *pendingGroup) {
	s.mu.Lock()
	if old, ok := s.pending[p.Group]; ok {
		p.up, p.lastWhy = old.up, old.lastWhy
	} else {
		p.up = map[string]bool{}
	}
	p.adopted = time.Now()
	s.pending[p.Group] = p
	s.mu.Unlock()
	s.confirm(ctx, p.Group)
}

// untrack stops tracking a group (it is being destroyed), here and in the
// bucket, whoever stored it.
func (s *Service) untrack(ctx context.Context, group string) {
	s.mu.Lock()
	delete(s.pending, group)
	s.mu.Unlock()
	s.dropPending(ctx, &pendingGroup{Group: group})
}

// dropPending deletes a settled group's pending entry, if it is still the
// one settled (p.rev; 0: whichever): a group tracked again meanwhile (a
// resize, a redelivered create) keeps its newer entry. One left behind by
// a failure is read again and settled again, announcing nothing new (the
// announcements' ids are derived).
func (s *Service) dropPending(ctx context.Context, p *pendingGroup) {
	err := s.releases.DeletePending(ctx, p.Group, p.rev)
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) { // a newer entry
		s.log.Warn().Err(err).Str(logging.FieldServerGroup, p.Group).Msg("delete a pending group's entry")
	}
}

// check confirms a pending group once the changes seen here count every
// desired instance up.
func (s *Service) check(ctx context.Context, group string) {
	s.mu.Lock()
	p, ok := s.pending[group]
	enough := ok && len(p.up) >= p.Desired
	s.mu.Unlock()
	if enough {
		s.confirm(ctx, group)
	}
}

// confirm counts a pending group's instances up in discovery, and
// announces the group ready once every desired one is: ready means
// routable, not only up at the provider. It returns the count, and p if
// the group is still pending here after it (nil: settled, or not tracked
// here); err is discovery unreadable, which counts nothing.
func (s *Service) confirm(ctx context.Context, group string) (int, *pendingGroup, error) {
	s.mu.Lock()
	p, ok := s.pending[group]
	s.mu.Unlock()
	if !ok {
		return 0, nil, nil
	}
	ids, err := discovery.Up(ctx, s.instances, p.Service, group)
	if err != nil {
		return 0, p, err
	}
	if len(ids) < p.Desired {
		return len(ids), p, nil
	}
	s.mu.Lock()
	if s.pending[group] != p { // settled or replaced meanwhile
		s.mu.Unlock()
		return len(ids), nil, nil
	}
	delete(s.pending, group)
	s.mu.Unlock()
	up := len(ids)
	s.log.Info().Str(logging.FieldService, p.Service).Str(logging.FieldServerGroup, group).Int("up", up).Msg("server group ready")
	s.untilStored(ctx, "servergroup.ready of "+group, func(ctx context.Context) error {
		return s.publish(ctx, p.Cause+":ready", events.ServerGroupReady, p.Service, events.ServerGroup{Service: p.Service, Group: group, Capacity: p.Desired, Up: up})
	})
	if p.Release != "" {
		s.releaseGroupReady(ctx, p.Release, p.Service, group, up)
	}
	s.dropPending(ctx, p)
	return up, nil, nil
}

// trackPending tracks the pending groups until ctx ends: every
// pendingCheck it confirms each against discovery and fails those past
// their deadline; every pendingLoad it takes up those stored by other
// copies or left by a tracker that died. The caller sets s.tracking
// first, so that no group tracked meanwhile waits for a load.
func (s *Service) trackPending(ctx context.Context) {
	defer func() {
		s.tracking.Store(false)
		s.mu.Lock()
		clear(s.pending) // the next tracker reads them from the bucket
		s.mu.Unlock()
	}()
	t := time.NewTicker(pendingCheck)
	defer t.Stop()
	var loaded time.Time
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if time.Since(loaded) >= pendingLoad {
			if s.loadPending(cctx) == nil {
				loaded = time.Now()
			}
		}
		now := time.Now()
		s.mu.Lock()
		var due, late []string
		for name, p := range s.pending {
			if now.After(p.Deadline) {
				late = append(late, name)
			} else {
				due = append(due, name)
			}
		}
		s.mu.Unlock()
		for _, name := range due {
			s.confirm(cctx, name)
		}
		for _, name := range late {
			// up at the last moment, or failed; not while discovery
			// cannot be read: that counts nothing
			if up, p, err := s.confirm(cctx, name); p != nil && err == nil {
				s.failPending(cctx, name, fmt.Sprintf("not all up within %s: %d of %d up", s.cfg.StartupTimeout, up, p.Desired))
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loadPending reads the pending groups stored in the bucket: it adopts
// those not tracked here, and forgets those gone from it since (settled
// or destroyed by another copy) unless adopted here after the read began.
func (s *Service) loadPending(ctx context.Context) error {
	began := time.Now()
	entries, err := natsx.Entries(ctx, s.releases.KV, release.PendingKey("*"))
	if err != nil {
		return err
	}
	stored := map[string]*pendingGroup{}
	for _, e := range entries {
		var p pendingGroup
		if err := json.Unmarshal(e.Value(), &p); err != nil || p.validate(e.Key()) != nil {
			s.log.Warn().Str("key", e.Key()).Msg("unreadable pending group entry: left alone")
			continue
		}
		p.rev = e.Revision()
		stored[p.Group] = &p
	}
	var adopt []*pendingGroup
	s.mu.Lock()
	for name, p := range s.pending {
		if _, ok := stored[name]; !ok && p.adopted.Before(began) {
			delete(s.pending, name)
		}
	}
	for name, p := range stored {
		if _, ok := s.pending[name]; !ok {
			adopt = append(adopt, p)
		}
	}
	s.mu.Unlock()
	for _, p := range adopt {
		s.log.Info().Str(logging.FieldService, p.Service).Str(logging.FieldServerGroup, p.Group).Msg("tracking a pending group stored by another copy")
		s.adopt(ctx, p)
	}
	return nil
}

// validate checks an entry read from the bucket: its key's group, a group
// of its service, at least one instance wanted.
func (p *pendingGroup) validate(key string) error {
	if svc, _, _, err := release.ParseGroup(p.Group); err != nil || svc != p.Service || key != release.PendingKey(p.Group) || p.Desired < 1 {
		return fmt.Errorf("pending entry %s: group %q of %q, %d wanted", key, p.Group, p.Service, p.Desired)
	}
	return nil
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
	if p.Created {
		if err := s.provider.DestroyGroup(ctx, group); err != nil {
			reason += "; destroy failed: " + err.Error()
		} else {
			reason += "; group destroyed"
			s.forget(ctx, p.Service, group)
		}
	}
	s.untilStored(ctx, "servergroup.failed of "+group, func(ctx context.Context) error {
		return s.fail(ctx, p.Cause, p.Service, group, p.Desired, reason)
	})
	if p.Release != "" {
		s.releaseGroupFailed(ctx, p.Release, p.Service, group, reason)
	}
	s.dropPending(ctx, p)
}
