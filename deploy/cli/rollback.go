package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

func (a *app) rollbackCmd() *cobra.Command {
	var reason string
	var wait bool
	var waitFor time.Duration
	cmd := &cobra.Command{
		Use:   "rollback SERVICE [--reason …] [--wait]",
		Short: "Roll SERVICE back: the release in flight, or the last completed one while its previous group is kept",
		Long: `Publishes release.<SERVICE>.rollback.requested for the release in flight, at
whatever phase it is: a canary is stopped, a new group is destroyed, and after
the switch all traffic goes back to the previous group first.

With no release in flight, rolls back the last completed release if the group
it replaced is still kept (strategy.keep_previous): traffic switches back to it
at once and the newer group is destroyed.

With --wait, follows the rollback to rolled_back.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := args[0]
			if err := subjects.ValidateService(service); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			ctx, cancel := timeout(10 * time.Second)
			rec, seq, err := RequestRollback(ctx, c.js, service, reason, "user "+requester())
			cancel()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "rollback of release %s (%s %s, %s) requested\n", rec.ID, service, rec.Version, rec.Phase)
			if !wait {
				return nil
			}
			return a.follow(c, service, rec.ID, seq, time.Now(), waitFor, events.RolledBack)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the rollback to its end")
	cmd.Flags().DurationVar(&waitFor, "timeout", 5*time.Minute, "with --wait, give up after this long")
	return cmd
}

// RollbackTarget finds what a rollback of service applies to: the release
// holding its lock, or else its last release if that completed, still has
// the traffic and the group it replaced is kept.
func RollbackTarget(ctx context.Context, js jetstream.JetStream, service string) (release.Record, error) {
	kv, err := js.KeyValue(ctx, topology.BucketReleases)
	if err != nil {
		return release.Record{}, err
	}
	store := release.Store{KV: kv}
	if l, _, err := store.Lock(ctx, service); err == nil {
		rec, _, err := store.Get(ctx, l.Release)
		return rec, err
	} else if !errors.Is(err, release.ErrNotFound) {
		return release.Record{}, err
	}
	c, _, err := store.Counter(ctx, service)
	if err != nil {
		return release.Record{}, err
	}
	if c.LastRelease == "" {
		return release.Record{}, fmt.Errorf("%s has no release to roll back", service)
	}
	rec, _, err := store.Get(ctx, c.LastRelease)
	if err != nil {
		return rec, err
	}
	rkv, err := js.KeyValue(ctx, topology.BucketRoutes)
	if err != nil {
		return rec, err
	}
	rt, _, err := routes.Get(ctx, rkv, service)
	if err != nil {
		return rec, err
	}
	if rec.Phase != release.PhaseCompleted || rt.Active != rec.Group || rt.Previous == "" {
		return rec, fmt.Errorf("nothing to roll back: no release of %s is in flight, and the last one (%s, %s) has no kept previous group with the traffic on %s", service, rec.ID, rec.Phase, rt.Active)
	}
	return rec, nil
}

// RequestRollback publishes rollback.requested for RollbackTarget's
// release and returns it with the event's stream sequence.
func RequestRollback(ctx context.Context, js jetstream.JetStream, service, reason, by string) (release.Record, uint64, error) {
	rec, err := RollbackTarget(ctx, js, service)
	if err != nil {
		return rec, 0, err
	}
	if reason == "" {
		reason = "requested by hand"
	}
	ev, err := events.New("redblack/cli", events.RollbackRequested, service, rec.ID, events.Rollback{Service: service, Group: rec.Group, Reason: reason, By: by})
	if err != nil {
		return rec, 0, err
	}
	ack, err := natsx.Publish(ctx, js, events.RollbackRequested.Subject(service), ev)
	if err != nil {
		return rec, 0, err
	}
	return rec, ack.Sequence, nil
}
