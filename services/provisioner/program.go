package provisioner

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/alb"
	"github.com/redblack/redblack/shared/svcmain"
)

// Program is the provisioner as a program of its own: the binary's main
// and `redblack run provisioner`, with the local provider's files in --data,
// or the aws provider (--provider aws) with the ALB edge's target groups.
func Program() svcmain.Program {
	cfg := DefaultConfig()
	var pf ProviderFlags
	var edge alb.Flags
	return svcmain.Program{Name: "provisioner",
		Bind: func(fs *flag.FlagSet) {
			fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory for the local provider's records and instance logs")
			fs.BoolVar(&cfg.StopInstancesOnExit, "stop-instances", false, "stop every instance on exit (default: leave them for the next start to re-adopt)")
			fs.BoolVar(&cfg.Local.Sandbox.Off, "no-sandbox", false, "local: run instances as this process's user (default, as root: each as its service's own unprivileged user, in a PID namespace of its own)")
			fs.StringVar(&cfg.Host, "host", "", "local: this host's name among provisioners on several hosts, each owning its host's instances (default: the hostname)")
			pf.Bind(fs)
			edge.Bind(fs)
		},
		Build: func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, err := pf.Build(ctx, &edge)
			if err != nil {
				return svcmain.Failed(fmt.Errorf("provisioner: %w", err))
			}
			cfg.Provider = p
			return New(cfg, nc, log)
		},
	}
}
