package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/shared/subjects"
)

func (a *app) loadCmd() *cobra.Command {
	var addr string
	var rate float64
	var workers int
	var dur, every time.Duration
	cmd := &cobra.Command{
		Use:   "load SERVICE [--rate 50] [--for 0]",
		Short: "Put steady HTTP load on a service through the router, and count what failed",
		Long: `Sends GET requests at --rate per second through the router (--http, the
address up serves on) with the service's name as Host, until --for has passed
or SIGINT or SIGTERM. Every --every it prints what was served, what failed
and which versions answered; at the end the totals. It exits 1 if any request
failed: a release, a failed release and a rollback should fail none.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := args[0]
			if err := subjects.ValidateService(service); err != nil {
				return err
			}
			if rate <= 0 || rate > 10000 || workers < 1 || workers > 256 {
				return fmt.Errorf("--rate %g, --workers %d: want 0 < rate ≤ 10000 and 1..256 workers", rate, workers)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if dur > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, dur)
				defer cancel()
			}
			var lastErr atomic.Pointer[string]
			l := bench.StartPaced(addr, service, rate, workers, nil, func(err error, status int) {
				msg := fmt.Sprintf("HTTP %d", status)
				if err != nil {
					msg = err.Error()
				}
				lastErr.Store(&msg)
			})
			start := time.Now()
			tick := time.NewTicker(every)
			defer tick.Stop()
			report := func() {
				fmt.Fprintf(a.out, "load %s: %s: %d served, %d failed", service, time.Since(start).Round(time.Second), l.OK(), l.Failed())
				if e := lastErr.Load(); e != nil && l.Failed() > 0 {
					fmt.Fprintf(a.out, " (last: %s)", *e)
				}
				fmt.Fprintln(a.out)
			}
		loop:
			for {
				select {
				case <-ctx.Done():
					break loop
				case <-tick.C:
					report()
				}
			}
			ok, failed, versions := l.Stop()
			fmt.Fprintf(a.out, "load %s: done after %s: %d served, %d failed; versions that answered: %s\n",
				service, time.Since(start).Round(time.Second), ok, failed, strings.Join(versions, ", "))
			if failed > 0 {
				return exitCode{code: 1, msg: fmt.Sprintf("%d of %d requests failed", failed, ok+failed)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "http", "127.0.0.1:8080", "the router's HTTP address (up's --http)")
	cmd.Flags().Float64Var(&rate, "rate", 50, "requests per second")
	cmd.Flags().IntVar(&workers, "workers", 8, "concurrent requests at most")
	cmd.Flags().DurationVar(&dur, "for", 0, "stop after this long (0: at SIGINT or SIGTERM)")
	cmd.Flags().DurationVar(&every, "every", 5*time.Second, "print the counts this often")
	return cmd
}
