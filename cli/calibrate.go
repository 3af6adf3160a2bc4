package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/subjects"
)

func (a *app) canaryCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "canary", Short: "The canary judge: calibrate it on a service's real traffic"}
	var duration string
	var limit time.Duration
	calibrate := &cobra.Command{
		Use:   "calibrate SERVICE [--duration D]",
		Short: "A/A calibration: judge two groups of the production version against each other on real traffic",
		Long: `Launches two groups of the version SERVICE runs in production (a baseline and a
second "canary" of the same artifact), gives each the strategy's share of real
traffic, judges them against each other with the service's own canary strategy
for its duration (or --duration), and reports what the judge decided and how
close it came to failing: the strongest evidence any metric reached, as a share
of what fails a canary. It takes the service's lock like a release, emits
release.<SERVICE>.calibrated with the report, and tears both groups down;
nothing is released.

Exit 0 if the judge passed the A/A canary, 1 if it failed it (the strategy
would fail healthy releases of this service: widen a tolerance or raise the
confidence), 2 if --timeout passes first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := args[0]
			if err := subjects.ValidateService(service); err != nil {
				return err
			}
			if duration != "" {
				if _, err := time.ParseDuration(duration); err != nil {
					return fmt.Errorf("--duration: %w", err)
				}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			asked := time.Now()
			ans, err := c.request(service, api.ReleaseRequest{Version: "calibration", Reason: "A/A calibration", Calibrate: true, Duration: duration})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "calibration %s requested for %s\n", ans.Release, service)
			return a.awaitCalibration(c, service, ans.Release, ans.Seq, asked, limit)
		},
	}
	calibrate.Flags().StringVar(&duration, "duration", "", "how long to judge (default: the strategy's canary duration)")
	calibrate.Flags().DurationVar(&limit, "timeout", 2*time.Hour, "give up after this long")
	cmd.AddCommand(calibrate)
	return cmd
}

// awaitCalibration follows a calibration to its report and prints it.
func (a *app) awaitCalibration(c *client, service, id string, seq uint64, requested time.Time, limit time.Duration) error {
	return a.followUntil(c, service, id, seq, requested, limit, func(ev events.Event) (bool, error) {
		switch ev.Type {
		case events.ReleaseRejected.Type():
			return true, exitCode{code: 1, msg: "calibration " + id + " rejected"}
		case events.Calibrated.Type():
			var cal events.Calibration
			if err := ev.DecodeData(&cal); err != nil {
				return true, err
			}
			a.printCalibration(cal)
			if !cal.Passed {
				return true, exitCode{code: 1, msg: "the judge failed two groups of the same version: " + cal.Report.Reason}
			}
			return true, nil
		}
		return false, nil
	})
}

func (a *app) printCalibration(cal events.Calibration) {
	r := cal.Report
	fmt.Fprintf(a.out, "\nA/A calibration of %s: %s after %d looks at %g%% confidence; %d samples refused\n", cal.Service,
		map[bool]string{true: "passed", false: "FAILED"}[cal.Passed], r.Looks, 100*r.Confidence, r.DroppedSamples)
	tw := newTable(a.out)
	fmt.Fprintln(tw, "metric\trequests (A / B)\tA\tB\tdifference and confidence sequence\tpeak evidence (1 fails)\tverdict")
	for _, m := range r.Metrics {
		fig := func(v float64) string {
			if m.Name == "error_rate" {
				return fmt.Sprintf("%.3f%%", 100*v)
			}
			return fmt.Sprintf("%.2fms", v)
		}
		fmt.Fprintf(tw, "%s\t%d / %d\t%s\t%s\t%+.3f [%+.3f, %+.3f]\t%.2f\t%s\n", m.Name, m.BaselineSamples, m.CanarySamples,
			fig(m.BaselineMedian), fig(m.CanaryMedian), m.Estimate, m.Low, m.High, m.Peak, m.Classification)
	}
	tw.Flush()
	fmt.Fprintf(a.out, "closest approach: %.0f%% of the failure threshold (%s)\n", 100*cal.Closest, cal.ClosestMetric)
	fmt.Fprintln(a.out, "\nBetween instances of the same version (the placement the judge does not blame on a version):")
	tw = newTable(a.out)
	fmt.Fprintln(tw, "metric\tinstances (A / B)\tspread between instances (sd)\tdegrees of freedom")
	for _, m := range r.Metrics {
		if m.Template != "" {
			continue
		}
		unit := "points of requests past the baseline's quantile"
		if m.Name == "error_rate" {
			unit = "points of error rate"
		}
		spread := fmt.Sprintf("%.2f %s", 100*m.PlacementSD, unit)
		if m.PlacementDF == 0 {
			spread = "not measured: one instance a group (raise strategy.canary.capacity)"
		}
		fmt.Fprintf(tw, "%s\t%d / %d\t%s\t%d\n", m.Name, m.BaselineInstances, m.CanaryInstances, spread, m.PlacementDF)
	}
	tw.Flush()
}
