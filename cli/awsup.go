package cli

import (
	"context"
	"flag"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/services/provisioner"
	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/shared/alb"
)

// awsFlags are `redblack up`'s settings for the aws provider and the ALB
// edge: the provisioner's and the router's own flag definitions, so that
// the one-process up and the services' binaries (which `up --nodes` runs)
// take the same flags.
type awsFlags struct {
	provider provisioner.ProviderFlags
	edge     alb.Flags
	router   router.AWSFlags
	// the flag sets, to pass what was set on to the processes
	provFS, edgeFS, routerFS *flag.FlagSet
	cmd                      *cobra.Command
}

func (f *awsFlags) register(cmd *cobra.Command) {
	f.cmd = cmd
	f.provFS, f.edgeFS, f.routerFS = flag.NewFlagSet("provider", flag.ContinueOnError), flag.NewFlagSet("edge", flag.ContinueOnError), flag.NewFlagSet("router", flag.ContinueOnError)
	f.provider.Bind(f.provFS)
	f.edge.Bind(f.edgeFS)
	f.router.Bind(f.routerFS)
	for _, fs := range []*flag.FlagSet{f.provFS, f.edgeFS, f.routerFS} {
		cmd.Flags().AddGoFlagSet(fs)
	}
}

// apply puts the aws provider and, with listeners, the ALB edge into cfg.
func (f *awsFlags) apply(ctx context.Context, cfg *mesh.Config) error {
	p, err := f.provider.Build(ctx, &f.edge)
	if err != nil || p == nil {
		return err
	}
	cfg.Provisioner.Provider = p
	return f.router.Apply(ctx, &cfg.Router, &f.edge)
}

// args are the flags given to up that the provisioner's and the router's
// processes take, as their arguments (for `up --nodes`).
func (f *awsFlags) args() (provisionerArgs, routerArgs []string) {
	set := func(fs *flag.FlagSet) []string {
		var out []string
		fs.VisitAll(func(fl *flag.Flag) {
			if f.cmd.Flags().Changed(fl.Name) {
				out = append(out, "--"+fl.Name+"="+fl.Value.String())
			}
		})
		return out
	}
	edge := set(f.edgeFS)
	return append(set(f.provFS), edge...), append(edge, set(f.routerFS)...)
}
