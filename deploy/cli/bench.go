package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/deploy/bench"
)

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure redblack and print the figures beside their targets"}
	var n int
	var idle time.Duration
	backbone := &cobra.Command{
		Use:   "backbone",
		Short: "publish→consume latency, intake decisions/s, `redblack up` cold start and idle RSS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := os.MkdirTemp("", "redblack-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			sub := func(name string) string { return filepath.Join(dir, name) }
			fmt.Fprintf(a.out, "%-52s %-24s %s\n", "figure", "measured", "target")
			lat, err := bench.PublishConsume(sub("latency"), n)
			if err != nil {
				return fmt.Errorf("publish→consume: %w", err)
			}
			fmt.Fprintf(a.out, "%-52s %-24s %s\n", fmt.Sprintf("publish→consume p50 / p99 (n=%d)", lat.N),
				fmt.Sprintf("%s / %s", lat.P50.Round(time.Microsecond), lat.P99.Round(time.Microsecond)), "p99 < 5ms")
			for _, c := range []struct {
				label    string
				services int
			}{{"intake, all accepted (n services)", n}, {"intake, one service (1 accepted, rest busy)", 1}} {
				r, err := bench.IntakeRate(sub(fmt.Sprintf("intake%d", c.services)), n, c.services)
				if err != nil {
					return fmt.Errorf("intake: %w", err)
				}
				fmt.Fprintf(a.out, "%-52s %-24s %s\n", fmt.Sprintf("%s, n=%d", c.label, n),
					fmt.Sprintf("%.0f decisions/s", r.PerSecond()), "≥ 2,000/s")
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			up, err := bench.UpProcess(self, sub("up"), idle)
			if err != nil {
				return fmt.Errorf("up: %w", err)
			}
			fmt.Fprintf(a.out, "%-52s %-24s %s\n", "redblack up: exec to ready", up.Ready.Round(time.Millisecond), "< 2s")
			fmt.Fprintf(a.out, "%-52s %-24s %s\n", fmt.Sprintf("redblack up: RSS after %s idle", up.Idle), fmt.Sprintf("%.1f MB", float64(up.IdleRSS)/1e6), "< 150 MB")
			return nil
		},
	}
	backbone.Flags().IntVar(&n, "n", 2000, "messages and requests per measurement")
	backbone.Flags().DurationVar(&idle, "idle", 5*time.Second, "how long `redblack up` idles before its RSS is read")
	var kills int
	fleetCmd := &cobra.Command{
		Use:   "fleet",
		Short: "groups of 10 and 100 instances to all up, SIGKILL to replacement up, memory per instance",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := os.MkdirTemp("", "redblack-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			hello, err := buildHello(dir)
			if err != nil {
				return err
			}
			r, err := bench.FleetRun(filepath.Join(dir, "mesh"), hello, []int{10, 100}, kills)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%-52s %-24s %s\n", "figure (examples/hello, local provider)", "measured", "target")
			for _, n := range []int{10, 100} {
				fmt.Fprintf(a.out, "%-52s %-24s %s\n", fmt.Sprintf("%d-instance group: create → all up (ready)", n), r.ToReady[n].Round(time.Millisecond), "< 10s")
			}
			fmt.Fprintf(a.out, "%-52s %-24s %s\n", fmt.Sprintf("SIGKILL → replacement up, p50 / max (n=%d)", r.Replace.N),
				fmt.Sprintf("%s / %s", r.Replace.P50.Round(time.Millisecond), r.Replace.Max.Round(time.Millisecond)), "< 2s")
			fmt.Fprintf(a.out, "%-52s %-24s %s\n", "memory per instance (RSS) min / avg / max",
				fmt.Sprintf("%.1f / %.1f / %.1f MB", mb(r.RSSMin), mb(r.RSSAvg), mb(r.RSSMax)), "-")
			return nil
		},
	}
	fleetCmd.Flags().IntVar(&kills, "kills", 5, "instances to SIGKILL for the replacement figure")
	cmd.AddCommand(backbone, fleetCmd)
	return cmd
}

func mb(b int64) float64 { return float64(b) / 1e6 }
