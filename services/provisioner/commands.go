package provisioner

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/hosts"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
)

// Source is the CloudEvents source of the provisioner's events.
const Source = "redblack/provisioner"

// handle runs one command. Bad commands are answered with a failed event and
// acked: no retry can fix them.
func (s *Service) handle(ctx context.Context, msg jetstream.Msg) error {
	ev, err := events.Decode(msg.Data())
	if err != nil {
		return natsx.Permanent(fmt.Errorf("provisioner: %s: %w", msg.Subject(), err))
	}
	k, ok := ev.Kind()
	if !ok {
		return natsx.Permanent(fmt.Errorf("provisioner: unknown command type %q", ev.Type))
	}
	p, err := subjects.Parse(msg.Subject())
	if err != nil {
		return natsx.Permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StepTimeout)
	defer cancel()
	switch k {
	case events.InstanceTerminate:
		var c events.InstanceCommand
		if err := ev.DecodeData(&c); err != nil {
			return natsx.Permanent(err)
		}
		return s.terminate(ctx, c)
	case events.ServerGroupCreate, events.ServerGroupResize, events.ServerGroupDestroy:
		var c events.ServerGroupCommand
		if err := ev.DecodeData(&c); err != nil {
			return s.fail(ctx, ev.ID, p.Service, "", 0, "invalid command: "+err.Error())
		}
		if c.Service != p.Service {
			return s.fail(ctx, ev.ID, p.Service, c.Group, c.Capacity, fmt.Sprintf("command names service %q on subject of %q", c.Service, p.Service))
		}
		if svc, _, _, err := release.ParseGroup(c.Group); err != nil || svc != c.Service {
			return s.fail(ctx, ev.ID, c.Service, c.Group, c.Capacity, fmt.Sprintf("group %q is not a group of %s (want %s-vNNN)", c.Group, c.Service, c.Service))
		}
		var err error
		switch k {
		case events.ServerGroupCreate:
			err = s.create(ctx, ev, c)
		case events.ServerGroupResize:
			err = s.resize(ctx, ev, c)
		default:
			err = s.destroy(ctx, ev, c)
		}
		if errors.Is(err, hosts.ErrHostDown) || errors.Is(err, hosts.ErrNoHost) {
			// the group's host is gone, or the one named is unknown: said
			// loudly, never as "no such group"
			return s.fail(ctx, ev.ID, c.Service, c.Group, c.Capacity, err.Error())
		}
		return err
	}
	return natsx.Permanent(fmt.Errorf("provisioner: %s is not a command", ev.Type))
}

// autoscaleOf is the autoscale of a service's group in role: the
// production group's only (a canary or a baseline keeps its size).
func autoscaleOf(svc spec.Service, role string) *spec.Autoscale {
	if role != release.RoleProduction {
		return nil
	}
	return svc.Autoscale
}

// checkCapacity bounds a capacity by the spec's max and the global cap.
func (s *Service) checkCapacity(svc spec.Service, n int) error {
	limit := min(svc.MaxCapacity, s.cfg.MaxCapacity)
	if n < 1 || n > limit {
		return fmt.Errorf("capacity %d: want 1..%d (max_capacity %d of %s, global cap %d)", n, limit, svc.MaxCapacity, svc.Name, s.cfg.MaxCapacity)
	}
	return nil
}

func (s *Service) create(ctx context.Context, ev events.Event, c events.ServerGroupCommand) error {
	return s.launchGroup(ctx, ev.ID, ev.ReleaseID, c)
}

// launchGroup creates a group (or, if it exists already, tracks it again)
// and reports created; ready or failed follow once its instances are up or
// not. cause derives the ids of those events; releaseID ties the group to a
// release so its readiness or failure moves the release on.
func (s *Service) launchGroup(ctx context.Context, cause, releaseID string, c events.ServerGroupCommand) error {
	svc, err := spec.Get(ctx, s.services, c.Service)
	if errors.Is(err, spec.ErrNotFound) {
		return s.fail(ctx, cause, c.Service, c.Group, c.Capacity, fmt.Sprintf("unknown service %q", c.Service))
	}
	if err != nil {
		return err
	}
	if err := s.checkCapacity(svc, c.Capacity); err != nil {
		return s.fail(ctx, cause, c.Service, c.Group, c.Capacity, err.Error())
	}
	art := c.Artifact
	if art.IsZero() {
		if art, err = svc.Resolve(art, c.Version); err != nil {
			return s.fail(ctx, cause, c.Service, c.Group, c.Capacity, "artifact: "+err.Error())
		}
	}
	// the command came through the intake; checked again against the spec
	// where it runs
	if err := svc.Allows(art); err == nil && art.AMI != "" && art.AMI != svc.Artifact.AMI {
		// an AMI the request chose: its owner or name must be the spec's
		ic, ok := s.provider.(imageChecker)
		if !ok {
			return s.fail(ctx, cause, c.Service, c.Group, c.Capacity, "artifact: this provider cannot check an AMI's owner")
		}
		if err := ic.CheckImage(ctx, art.AMI, svc.Artifact.AMIOwners, svc.Artifact.AMINamePrefix); err != nil {
			return s.fail(ctx, cause, c.Service, c.Group, c.Capacity, "artifact: "+err.Error())
		}
	}
	if err := svc.Allows(art); err != nil {
		return s.fail(ctx, cause, c.Service, c.Group, c.Capacity, "artifact: "+err.Error())
	}
	if _, err := s.provider.DescribeGroup(ctx, c.Group); err == nil {
		// a redelivery, or a second create of a live group: nothing twice
		if releaseID != "" {
			if err := s.track(ctx, c.Group, c.Service, c.Capacity, true, cause, releaseID); err != nil {
				return err
			}
		}
		return s.publish(ctx, cause+":created", events.ServerGroupCreated, c.Service, events.ServerGroup{Service: c.Service, Group: c.Group, Capacity: c.Capacity, Reason: "exists already"})
	}
	role := c.Role
	if role == "" {
		_, _, role, _ = release.ParseGroup(c.Group)
	}
	_, err = s.provider.CreateGroup(ctx, fleet.GroupSpec{
		Service: c.Service, Group: c.Group, Version: c.Version, Role: role,
		Capacity: c.Capacity, Artifact: art, Health: svc.Health, Protocol: svc.Protocol, AWS: svc.AWS, Release: releaseID, Host: c.Host, Autoscale: autoscaleOf(svc, role),
		Stateful: c.Stateful, Slots: c.Slots, SlotCount: c.SlotCount,
	})
	if errors.Is(err, fleet.ErrBadArtifact) || errors.Is(err, fleet.ErrCapacity) {
		if releaseID != "" {
			s.releaseGroupFailed(ctx, releaseID, c.Service, c.Group, err.Error())
		}
		return s.fail(ctx, cause, c.Service, c.Group, c.Capacity, err.Error())
	}
	if err != nil {
		return err
	}
	if err := s.track(ctx, c.Group, c.Service, c.Capacity, true, cause, releaseID); err != nil {
		return err
	}
	s.log.Info().Str(logging.FieldService, c.Service).Str(logging.FieldServerGroup, c.Group).Int("capacity", c.Capacity).Msg("server group created")
	return s.publish(ctx, cause+":created", events.ServerGroupCreated, c.Service, events.ServerGroup{Service: c.Service, Group: c.Group, Capacity: c.Capacity})
}

func (s *Service) resize(ctx context.Context, ev events.Event, c events.ServerGroupCommand) error {
	svc, err := spec.Get(ctx, s.services, c.Service)
	if errors.Is(err, spec.ErrNotFound) {
		return s.fail(ctx, ev.ID, c.Service, c.Group, c.Capacity, fmt.Sprintf("unknown service %q", c.Service))
	}
	if err != nil {
		return err
	}
	if err := s.checkCapacity(svc, c.Capacity); err != nil {
		return s.fail(ctx, ev.ID, c.Service, c.Group, c.Capacity, err.Error())
	}
	if g, err := s.provider.DescribeGroup(ctx, c.Group); err == nil && c.Capacity < g.Desired {
		if refused, err := s.guard(ctx, ev.ID, c.Service, c.Group, "shrink"); refused || err != nil {
			return err // a refusal is reported; the command is done
		}
	}
	err = s.provider.Resize(ctx, c.Group, c.Capacity)
	if errors.Is(err, fleet.ErrGroupNotFound) {
		return s.fail(ctx, ev.ID, c.Service, c.Group, c.Capacity, "no such group")
	}
	if err != nil {
		return err
	}
	if err := s.track(ctx, c.Group, c.Service, c.Capacity, false, ev.ID, ""); err != nil {
		return err
	}
	return s.publish(ctx, ev.ID+":resized", events.ServerGroupResized, c.Service, events.ServerGroup{Service: c.Service, Group: c.Group, Capacity: c.Capacity})
}

func (s *Service) destroy(ctx context.Context, ev events.Event, c events.ServerGroupCommand) error {
	err := s.destroyGroup(ctx, ev.ID, c.Service, c.Group)
	if errors.Is(err, errRefused) {
		return nil // the refusal is reported; the command is done
	}
	return err
}

// errRefused: the traffic guard refused (and reported it).
var errRefused = errors.New("refused by the traffic guard")

// destroyGroup destroys a group unless it takes traffic (the traffic
// guard: errRefused), and reports destroyed or refused.
func (s *Service) destroyGroup(ctx context.Context, cause, service, group string) error {
	if refused, err := s.guard(ctx, cause, service, group, "destroy"); refused || err != nil {
		if refused {
			return errRefused
		}
		return err
	}
	if _, err := s.provider.DescribeGroup(ctx, group); errors.Is(err, fleet.ErrGroupNotFound) {
		return s.publish(ctx, cause+":destroyed", events.ServerGroupDestroyed, service, events.ServerGroup{Service: service, Group: group, Reason: "no such group: nothing to do"})
	}
	s.untrack(ctx, group)
	if err := s.provider.DestroyGroup(ctx, group); err != nil {
		return err
	}
	s.forget(ctx, service, group)
	s.log.Info().Str(logging.FieldService, service).Str(logging.FieldServerGroup, group).Msg("server group destroyed")
	return s.publish(ctx, cause+":destroyed", events.ServerGroupDestroyed, service, events.ServerGroup{Service: service, Group: group})
}

// guard is the traffic guard: a group with weight > 0 in the service's
// route is not destroyed or shrunk. A refusal is reported as
// servergroup.refused with the reason.
func (s *Service) guard(ctx context.Context, cause, service, group, what string) (bool, error) {
	r, _, err := routes.Get(ctx, s.routes, service)
	if err != nil && !errors.Is(err, routes.ErrNotFound) {
		return false, err
	}
	w := r.Weights[group]
	if w == 0 {
		return false, nil
	}
	reason := fmt.Sprintf("refused to %s %s: it takes traffic (weight %d of %d)", what, group, w, routes.MaxWeight)
	s.log.Warn().Str(logging.FieldService, service).Str(logging.FieldServerGroup, group).Msg(reason)
	return true, s.publish(ctx, cause+":refused", events.ServerGroupRefused, service, events.ServerGroup{Service: service, Group: group, Reason: reason})
}

func (s *Service) terminate(ctx context.Context, c events.InstanceCommand) error {
	err := s.provider.TerminateInstance(ctx, c.Group, c.Instance)
	if errors.Is(err, fleet.ErrGroupNotFound) || errors.Is(err, fleet.ErrInstanceNotFound) {
		s.log.Warn().Str(logging.FieldService, c.Service).Str(logging.FieldServerGroup, c.Group).Str("instance", c.Instance).Msg("terminate: no such instance (already gone?)")
		return nil
	}
	return err
}

// fail publishes servergroup.failed for a command.
func (s *Service) fail(ctx context.Context, cmdID, service, group string, capacity int, reason string) error {
	s.log.Warn().Str(logging.FieldService, service).Str(logging.FieldServerGroup, group).Str("reason", reason).Msg("server group failed")
	if subjects.ValidateService(service) != nil {
		service = subjects.Invalid
	}
	return s.publish(ctx, cmdID+":failed", events.ServerGroupFailed, service, events.ServerGroup{Service: service, Group: group, Capacity: capacity, Reason: reason})
}

func (s *Service) publish(ctx context.Context, id string, k events.Kind, service string, data any) error {
	ev, err := events.NewWithID(id, Source, k, service, "", data)
	if err != nil {
		return natsx.Permanent(err)
	}
	if _, err = natsx.Publish(ctx, s.js, k.Subject(service), ev); err == nil {
		s.fleetEvents.WithLabelValues(service, k.Name).Inc()
	}
	return err
}

// imageChecker is what the provisioner needs of a provider to allow an AMI
// a release request chose: the image's owner or name checked against the
// spec's.
type imageChecker interface {
	CheckImage(ctx context.Context, ami string, owners []string, namePrefix string) error
}
