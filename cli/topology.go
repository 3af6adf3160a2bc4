package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/redblack/redblack/shared/topology"
)

func (a *app) topologyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "topology", Short: "redblack's JetStream streams and buckets: what exists against what is wanted"}
	replicas := 0
	var all bool
	check := &cobra.Command{
		Use:   "check [--replicas N] [--all]",
		Short: "Print each stream's and bucket's fields as they exist beside what redblack wants, and what `up` would do",
		Long: `Compares every stream and key-value bucket with redblack's definition
(shared/topology), field by field, and says what ` + "`redblack up`" + ` (topology.Reconcile)
would do: create what is missing, raise what is below redblack's needs
(replicas, retention, subjects), set the few fields redblack's behaviour
depends on exactly (the audit log's deny-delete and deny-purge, the discovery
bucket's TTL), and keep every limit an operator raised. It changes nothing.
Replicas default to the cluster's size, at most 3 (1 on one server).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rows, o, err := a.topology(replicas, 10*time.Second, topology.Check)
			if err != nil {
				return err
			}
			tab := newTable(a.out)
			fmt.Fprintln(tab, "KIND\tNAME\tFIELD\tEXISTS\tWANTED\tACTION")
			todo := 0
			for _, r := range rows {
				if r.Action != topology.ActionOk && r.Action != topology.ActionKeep {
					todo++
				}
				if all || r.Action != topology.ActionOk {
					fmt.Fprintf(tab, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Name, r.Field, r.Has, r.Wants, r.Action)
				}
			}
			tab.Flush()
			fmt.Fprintf(a.out, "%d fields checked at %d replicas: %d to change, the rest as wanted or the operator's\n", len(rows), o.Replicas, todo)
			return nil
		},
	}
	check.Flags().IntVar(&replicas, "replicas", 0, "replicas wanted (default: the cluster's size, at most 3)")
	check.Flags().BoolVar(&all, "all", false, "list the fields that are as wanted too")
	ensure := &cobra.Command{
		Use:   "ensure [--replicas N]",
		Short: "Do what `topology check` says: create, raise and set, never taking from the operator (as the admin)",
		Long: `Reconciles the streams and buckets as ` + "`redblack up`" + ` does at its start, for
services run on a cluster of their own: the services create nothing (they have
no right to change the topology), so an operator runs this once, as the admin,
before starting them, and again after upgrading redblack.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rows, _, err := a.topology(replicas, 30*time.Second, topology.Reconcile)
			if err != nil {
				return err
			}
			tab := newTable(a.out)
			fmt.Fprintln(tab, "KIND\tNAME\tFIELD\tWAS\tWANTED\tDONE")
			for _, r := range rows {
				if r.Action != topology.ActionOk {
					fmt.Fprintf(tab, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Name, r.Field, r.Has, r.Wants, r.Action)
				}
			}
			return tab.Flush()
		},
	}
	ensure.Flags().IntVar(&replicas, "replicas", 0, "replicas wanted (default: the cluster's size, at most 3)")
	cmd.AddCommand(check, ensure)
	return cmd
}

// topology runs a topology function (Check or Reconcile) at replicas (0:
// the cluster's size), and returns its rows and the options it ran with.
func (a *app) topology(replicas int, limit time.Duration, run func(context.Context, jetstream.JetStream, topology.Options) ([]topology.Row, error)) ([]topology.Row, topology.Options, error) {
	c, err := a.dial()
	if err != nil {
		return nil, topology.Options{}, err
	}
	defer c.close()
	o := topology.DefaultOptions()
	o.Replicas = replicas
	if o.Replicas <= 0 {
		o.Replicas = topology.ReplicasFor(c.nc)
	}
	ctx, cancel := timeout(limit)
	defer cancel()
	rows, err := run(ctx, c.js, o)
	return rows, o, err
}
