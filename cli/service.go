package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// applyFile is `service apply` and `analysis apply`: it reads file (- for
// standard input) with parse, lists every invalid field (exit 1, nothing
// stored), stores it through the team API's verb, and prints what it did
// (created, updated or unchanged).
func (a *app) applyFile(kind, verb, file string, parse func(io.Reader) (name string, body any, err error)) error {
	if file == "" {
		return fmt.Errorf("%s apply: -f FILE is required (- for standard input)", kind)
	}
	var r io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("%s apply: %w", kind, err)
		}
		defer f.Close()
		r = f
	}
	name, body, err := parse(r)
	var ve *spec.ValidationError
	if errors.As(err, &ve) {
		for _, f := range ve.Fields {
			fmt.Fprintf(a.err, "  %s: %s\n", f.Field, f.Reason)
		}
		return exitCode{code: 1, msg: fmt.Sprintf("%s: %d invalid field(s); nothing stored", file, len(ve.Fields))}
	}
	if err != nil {
		return fmt.Errorf("%s: %w; nothing stored", file, err)
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.close()
	var res api.Applied
	if err := c.call(verb, name, body, &res); err != nil {
		return fmt.Errorf("%s: %w; nothing stored", file, err)
	}
	fmt.Fprintf(a.out, "%s %s %s\n", kind, name, res.Result)
	return nil
}

func (a *app) serviceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Apply, get and list service specs"}
	var file string
	apply := &cobra.Command{
		Use:   "apply -f FILE.yaml",
		Short: "Validate a service spec and store it through the team API (prints created, updated or unchanged)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.applyFile("service", api.VerbSpecApply, file, func(r io.Reader) (string, any, error) {
				s, err := spec.Parse(r)
				return s.Name, s, err
			})
		},
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "the spec file (YAML), - for standard input")

	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a service's stored spec as YAML",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			var s spec.Service
			if err := c.call(api.VerbSpecGet, args[0], nil, &s); err != nil {
				return err
			}
			return yaml.NewEncoder(a.out).Encode(s)
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the services with a spec",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var all []spec.Service
			err := a.withBucket(topology.BucketServices, func(ctx context.Context, kv jetstream.KeyValue) (err error) {
				all, err = spec.List(ctx, kv)
				return err
			})
			if err != nil {
				return err
			}
			tw := newTable(a.out)
			fmt.Fprintln(tw, "NAME\tOWNER\tPROVIDER\tCAPACITY\tHEALTH")
			for _, s := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s every %s\n", s.Name, s.Owner, s.Provider, s.Capacity, s.Health.Path, s.Health.Interval.D())
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(apply, get, list)
	return cmd
}
