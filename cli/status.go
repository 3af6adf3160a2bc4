package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// explain prints the path a release took through the state machine.
func (a *app) explain(ctx context.Context, c *client, id string) error {
	if err := release.ValidateID(id); err != nil {
		return err
	}
	kv, err := c.kv(ctx, topology.BucketReleases)
	if err != nil {
		return err
	}
	r, _, err := release.Store{KV: kv}.Get(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out, "release %s of %s (%s → %s): %s\n", r.ID, r.Service, r.Version, r.Group, r.Phase)
	for _, line := range release.Explain(r) {
		fmt.Fprintln(a.out, "  "+line)
	}
	if info := release.Info(r.Phase); !r.Phase.Final() {
		fmt.Fprintf(a.out, "a rollback from %s: %s\n", r.Phase, info.Undo)
	}
	if r.Reason != "" {
		fmt.Fprintf(a.out, "reason: %s\n", r.Reason)
	}
	return nil
}

// serviceState is what status shows of one service (--debug prints it
// as it is, the release record whole).
type serviceState struct {
	Service  string          `json:"service"`
	Active   string          `json:"active,omitempty"`
	InFlight string          `json:"in_flight,omitempty"`
	Last     *release.Record `json:"last_release,omitempty"`
}

func (a *app) statusCmd() *cobra.Command {
	var asJSON, debug bool
	var explain string
	cmd := &cobra.Command{
		Use:   "status [SERVICE] [--explain RELEASE]",
		Short: "Show each service's release state; --explain: the path a release took through the state machine",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			ctx, cancel := timeout(10 * time.Second)
			defer cancel()
			if explain != "" {
				return a.explain(ctx, c, explain)
			}
			services, err := c.kv(ctx, topology.BucketServices)
			if err != nil {
				return err
			}
			releases, err := c.kv(ctx, topology.BucketReleases)
			if err != nil {
				return err
			}
			rts, err := c.kv(ctx, topology.BucketRoutes)
			if err != nil {
				return err
			}
			var names []string
			if len(args) == 1 {
				if _, err := spec.Get(ctx, services, args[0]); err != nil {
					return err
				}
				names = args
			} else {
				all, err := spec.List(ctx, services)
				if err != nil {
					return err
				}
				for _, s := range all {
					names = append(names, s.Name)
				}
			}
			var states []serviceState
			for _, n := range names {
				st, err := readState(ctx, releases, rts, n)
				if err != nil {
					return err
				}
				states = append(states, st)
			}
			if debug {
				return printJSON(a.out, states)
			}
			if asJSON {
				doc := statusDoc{Schema: StatusSchema, Services: []serviceStatus{}}
				for _, s := range states {
					doc.Services = append(doc.Services, statusOf(s))
				}
				return printJSON(a.out, doc)
			}
			tw := newTable(a.out)
			fmt.Fprintln(tw, "SERVICE\tACTIVE\tIN FLIGHT\tLAST RELEASE\tVERSION\tGROUP\tPHASE\tSINCE")
			for _, s := range states {
				last, version, group, phase, since := "-", "-", "-", "-", "-"
				if r := s.Last; r != nil {
					last, version, group, phase = r.ID, r.Version, r.Group, string(r.Phase)
					if n := len(r.History); n > 0 {
						since = time.Since(r.History[n-1].At).Round(time.Second).String() + " ago"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Service, dash(s.Active), dash(s.InFlight), last, version, group, phase, since)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, s := range states {
				if s.Last != nil {
					a.printRecord(*s.Last)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&explain, "explain", "", "a release id: print its path through the state machine")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON in the schema "+StatusSchema+" (see the README)")
	cmd.Flags().BoolVar(&debug, "debug", false, "print the release records whole, as stored, with the judge's and the bake's evidence (not a stable schema)")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func readState(ctx context.Context, kv, rts jetstream.KeyValue, service string) (serviceState, error) {
	st := serviceState{Service: service}
	store := release.Store{KV: kv}
	counter, rev, err := store.Counter(ctx, service)
	if err != nil || rev == 0 {
		return st, err // no release yet
	}
	if r, _, err := routes.Get(ctx, rts, service); err == nil {
		st.Active = r.Active // the route is the one source of the active group
	}
	if lock, _, err := store.Lock(ctx, service); err == nil {
		st.InFlight = lock.Release
	} else if !errors.Is(err, release.ErrNotFound) {
		return st, err
	}
	if rec, _, err := store.Get(ctx, counter.LastRelease); err == nil {
		st.Last = &rec
	} else if !errors.Is(err, release.ErrNotFound) {
		return st, err
	}
	return st, nil
}

// printRecord prints a release's phases, reason and canary report.
func (a *app) printRecord(r release.Record) {
	_, phases, rollback := summarise(r)
	// the phase alone here: the reason has its own line, printed once
	fmt.Fprintf(a.out, "\n%s %s (%s): %s\n", r.Service, r.Version, r.ID, r.Phase)
	fmt.Fprintf(a.out, "  phases:   %s\n", phases)
	if r.Reason != "" {
		fmt.Fprintf(a.out, "  reason:   %s\n", r.Reason)
	}
	if rollback != "-" {
		fmt.Fprintf(a.out, "  rollback: %s, traffic on %s\n", rollback, dash(r.Restored))
	}
	if rep := r.Report; rep != nil && len(rep.Metrics) > 0 {
		fmt.Fprintf(a.out, "  canary:   score %.0f\n", rep.Score)
		for _, m := range rep.Metrics {
			fmt.Fprintf(a.out, "    %-12s %-7s baseline %.4g (n=%d)  canary %.4g (n=%d)  interval %.3g–%.3g\n",
				m.Name, m.Classification, m.BaselineMedian, m.BaselineSamples, m.CanaryMedian, m.CanarySamples, m.Low, m.High)
		}
	}
}

// printJSON is the --json output of the listing commands: indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
