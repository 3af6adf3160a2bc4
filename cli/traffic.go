package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

func (a *app) trafficCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "traffic", Short: "The router's weights: get, set, switch",
		Long: `Shows or changes the router's weights by hand. While a release of the
service is in flight the router refuses a change by hand (it would leave the
release to complete, or roll back, on a group it no longer describes);
--abort-release aborts that release first, through the state machine, and
then makes the change.`}
	var abort bool
	cmd.PersistentFlags().BoolVar(&abort, "abort-release", false, "abort the service's release in flight first, then change the weights")
	var getJSON bool
	get := &cobra.Command{
		Use:   "get SERVICE [--json]",
		Short: "Show a service's weights per server group",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			ctx, cancel := timeout(10 * time.Second)
			defer cancel()
			r, rev, gone, err := liveRoute(ctx, c, args[0])
			if err != nil {
				return err
			}
			if getJSON {
				return printJSON(a.out, struct {
					routes.Route
					Revision uint64 `json:"revision"`
				}{r, rev})
			}
			tw := newTable(a.out)
			fmt.Fprintf(tw, "GROUP\tWEIGHT\t\n")
			for _, g := range r.Groups() {
				mark := ""
				switch g {
				case r.Active:
					mark = "active"
				case r.Previous:
					mark = "previous"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\n", g, r.Weights[g], mark)
			}
			tw.Flush()
			fmt.Fprintf(a.out, "revision %d, changed %s ago: %s\n", rev, time.Since(r.Changed).Round(time.Second), r.Reason)
			if len(gone) > 0 {
				fmt.Fprintf(a.out, "not shown: %s, destroyed (weight 0, no instances; the router drops them at its next change)\n", strings.Join(gone, ", "))
			}
			return nil
		},
	}
	get.Flags().BoolVar(&getJSON, "json", false, "print JSON (the route's live groups: weights per group, active, previous, revision)")
	set := &cobra.Command{
		Use:   "set SERVICE GROUP=W …",
		Short: "Set weights (0..1000) of groups; the others keep theirs",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := map[string]int{}
			for _, kv := range args[1:] {
				g, v, ok := strings.Cut(kv, "=")
				n, err := strconv.Atoi(v)
				if !ok || err != nil || n < 0 || n > routes.MaxWeight {
					return fmt.Errorf("%q: want GROUP=WEIGHT with a weight of 0..1000", kv)
				}
				w[g] = n
			}
			return a.trafficCommand(events.TrafficSet, events.TrafficCommand{Service: args[0], Weights: w}, abort)
		},
	}
	sw := &cobra.Command{
		Use:   "switch SERVICE GROUP",
		Short: "Move all traffic to GROUP at once (the others keep running at weight 0)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.trafficCommand(events.TrafficSwitch, events.TrafficCommand{Service: args[0], Group: args[1]}, abort)
		},
	}
	restore := &cobra.Command{
		Use:   "restore SERVICE",
		Short: "Move all traffic back to the previous group at once (a rollback of the last switch)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.trafficCommand(events.TrafficRestore, events.TrafficCommand{Service: args[0]}, abort)
		},
	}
	cmd.AddCommand(get, set, sw, restore)
	return cmd
}

// liveRoute is a service's route without the groups that are gone: weight
// 0 and no instance left in discovery (the router prunes them only at its
// next change of the route). gone names them.
func liveRoute(ctx context.Context, c *client, service string) (r routes.Route, rev uint64, gone []string, err error) {
	if err := subjects.ValidateService(service); err != nil {
		return r, 0, nil, err
	}
	rts, err := c.kv(ctx, topology.BucketRoutes)
	if err != nil {
		return r, 0, nil, err
	}
	if r, rev, err = routes.Get(ctx, rts, service); err != nil {
		return r, 0, nil, err
	}
	inst, err := c.kv(ctx, topology.BucketInstances)
	if err != nil {
		return r, 0, nil, err
	}
	keys, err := natsx.Keys(ctx, inst, discovery.ServiceFilter(service))
	if err != nil {
		return r, 0, nil, err
	}
	live := map[string]bool{}
	for _, k := range keys {
		if _, group, _, err := discovery.ParseKey(k); err == nil {
			live[group] = true
		}
	}
	for _, g := range r.Groups() {
		if r.Weights[g] == 0 && !live[g] {
			delete(r.Weights, g)
			gone = append(gone, g)
			if r.Previous == g {
				r.Previous = ""
			}
		}
	}
	return r, rev, gone, nil
}

// trafficCommand publishes a traffic command and waits for the router's
// answer: applied by every router, or refused. With abort, the service's
// release in flight is aborted first.
func (a *app) trafficCommand(k events.Kind, tc events.TrafficCommand, abort bool) error {
	if err := subjects.ValidateService(tc.Service); err != nil {
		return err
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.close()
	if abort {
		if err := a.abortInFlight(c, tc.Service, "traffic "+strings.TrimPrefix(shortType(k.Type()), "fleet.traffic.")+" by hand"); err != nil {
			return err
		}
	}
	ev, err := events.New("redblack/cli", k, tc.Service, "", tc)
	if err != nil {
		return err
	}
	ctx, cancel := timeout(20 * time.Second)
	defer cancel()
	sub, err := c.nc.SubscribeSync(subjects.AllFleet(tc.Service))
	if err != nil {
		return err
	}
	switched, err := c.nc.SubscribeSync("release." + tc.Service + ".traffic.*")
	if err != nil {
		return err
	}
	if _, err := natsx.Publish(ctx, c.js, k.Subject(tc.Service), ev); err != nil {
		return err
	}
	start := time.Now()
	for ctx.Err() == nil {
		m, err := sub.NextMsg(50 * time.Millisecond)
		if err != nil {
			m, err = switched.NextMsg(50 * time.Millisecond)
		}
		if err != nil {
			continue
		}
		out, err := events.Decode(m.Data)
		if err != nil || !strings.HasPrefix(out.ID, ev.ID+":") {
			continue
		}
		switch out.Type {
		case events.TrafficRefused.Type():
			var d events.TrafficCommand
			out.DecodeData(&d)
			return exitCode{code: 1, msg: "refused: " + d.Reason}
		case events.TrafficChanged.Type(), events.TrafficSwitched.Type(), events.TrafficRestored.Type():
			var d events.Traffic
			out.DecodeData(&d)
			groups := make([]string, 0, len(d.Weights))
			for g, w := range d.Weights {
				groups = append(groups, fmt.Sprintf("%s=%d", g, w))
			}
			sort.Strings(groups)
			fmt.Fprintf(a.out, "%s: %s (revision %d, applied by every router in %s)\n", shortType(out.Type), strings.Join(groups, " "), d.Revision, time.Since(start).Round(time.Millisecond))
			return nil
		}
	}
	return errors.New("no answer from the router in 20s (is it running?)")
}

// abortInFlight aborts the release of service in flight, if any, and waits
// until its lock is free.
func (a *app) abortInFlight(c *client, service, why string) error {
	ctx, cancel := timeout(10 * time.Second)
	kv, err := c.kv(ctx, topology.BucketReleases)
	cancel()
	if err != nil {
		return err
	}
	store := release.Store{KV: kv}
	ctx, cancel = timeout(10 * time.Second)
	l, _, err := store.Lock(ctx, service)
	cancel()
	if errors.Is(err, release.ErrNotFound) {
		return nil // none in flight
	}
	if err != nil {
		return err
	}
	asked := time.Now()
	var ans api.Answer
	if err := c.call(api.VerbAbort, service, api.AbortRequest{Release: l.Release, Reason: why + " (--abort-release)"}, &ans); err != nil {
		return fmt.Errorf("abort %s first: %w", l.Release, err)
	}
	fmt.Fprintf(a.out, "abort of %s (%s, %s) requested first\n", l.Release, service, ans.Phase)
	if err := a.follow(c, service, l.Release, ans.Seq, asked, 2*time.Minute, events.ReleaseAborted); err != nil {
		var code exitCode
		if !errors.As(err, &code) || code.code != 1 { // 1: it ended otherwise first, which frees it too
			return err
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ctx, cancel := timeout(5 * time.Second)
		_, _, err := store.Lock(ctx, service)
		cancel()
		if errors.Is(err, release.ErrNotFound) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s ended, but the lock of %s is still held after 20s", l.Release, service)
		}
	}
}
