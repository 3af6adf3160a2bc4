package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/redblack/redblack/services/chaos"
	"github.com/redblack/redblack/services/chaos/monkey"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

func (a *app) chaosCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Chaos Monkey: its config, schedule, kills on demand, pause and resume",
		Long: `Chaos Monkey kills instances of opted-in services (spec: chaos.enabled) at
random, as Netflix's does. It is off and leashed (records, kills nothing) until
configured: redblack chaos config --enabled --leashed=false.`,
	}
	var group string
	kill := &cobra.Command{
		Use:   "kill SERVICE [--group G]",
		Short: "Kill an instance now: every check applies but the schedule",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := subjects.ValidateService(args[0]); err != nil {
				return err
			}
			var o monkey.Outcome
			if err := a.request("chaos", "kill", chaos.KillRequest{Service: args[0], Group: group}, &o); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%s %s %s %s\n", o.Result, o.Service, dash(o.Group), dash(o.Instance))
			if o.Reason != "" {
				fmt.Fprintf(a.out, "  %s\n", o.Reason)
			}
			if o.Result == monkey.Skipped {
				return exitCode{code: 1}
			}
			return nil
		},
	}
	kill.Flags().StringVar(&group, "group", "", "the server group (it must be the one that takes traffic)")
	schedule := &cobra.Command{
		Use:   "schedule [SERVICE]",
		Short: "The kills planned today (or in the next 10 s, fast mode)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := ""
			if len(args) == 1 {
				service = args[0]
			}
			var ps []chaos.Planned
			if err := a.request("chaos", "schedule", service, &ps); err != nil {
				return err
			}
			tw := newTable(a.out)
			fmt.Fprintln(tw, "SERVICE\tUNIT\tAT\tMODE")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Service, p.Unit, p.At.Local().Format("2006-01-02 15:04:05.000"), p.Mode)
			}
			return tw.Flush()
		},
	}
	pause := &cobra.Command{Use: "pause", Short: "Stop all kills until resume", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.updateChaos(func(c *monkey.Config) error { c.Paused = true; return nil })
		}}
	resume := &cobra.Command{Use: "resume", Short: "Let the monkey kill again", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.updateChaos(func(c *monkey.Config) error { c.Paused = false; return nil })
		}}
	var enabled, leashed bool
	var window, days, tz, holidays string
	var maxErr float64
	config := &cobra.Command{
		Use:   "config [--enabled] [--leashed=false] [--window 09:00-15:00] [--days mon-fri] [--tz Europe/Amsterdam] [--holidays 2026-12-25,…]",
		Short: "Show the global config, or change the fields given; it takes effect at once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			return a.updateChaos(func(c *monkey.Config) error {
				if f.Changed("enabled") {
					c.Enabled = enabled
				}
				if f.Changed("leashed") {
					c.Leashed = leashed
				}
				if f.Changed("window") {
					se := strings.SplitN(window, "-", 2)
					if len(se) != 2 {
						return fmt.Errorf("--window %q: want HH:MM-HH:MM", window)
					}
					c.Window.Start, c.Window.End = se[0], se[1]
				}
				if f.Changed("days") {
					ds, err := parseDays(days)
					if err != nil {
						return err
					}
					c.Window.Days = ds
				}
				if f.Changed("tz") {
					c.Window.TimeZone = tz
				}
				if f.Changed("holidays") {
					c.Holidays = strings.FieldsFunc(holidays, func(r rune) bool { return r == ',' || r == ' ' })
				}
				if f.Changed("max-error-rate") {
					c.MaxErrorRate = maxErr
				}
				return nil
			})
		},
	}
	config.Flags().BoolVar(&enabled, "enabled", false, "kill at all")
	config.Flags().BoolVar(&leashed, "leashed", true, "record what would be killed and kill nothing")
	config.Flags().StringVar(&window, "window", "", "daily kill window HH:MM-HH:MM")
	config.Flags().StringVar(&days, "days", "", "work days: mon-fri, or a list mon,wed,fri")
	config.Flags().StringVar(&tz, "tz", "", "the window's IANA time zone")
	config.Flags().StringVar(&holidays, "holidays", "", "dates without kills: 2026-12-25,2026-12-26")
	config.Flags().Float64Var(&maxErr, "max-error-rate", 0, "the outage check fails above this error rate")
	cmd.AddCommand(config, schedule, kill, pause, resume)
	return cmd
}

// updateChaos changes the stored chaos config with compare-and-set and
// prints it; nothing is stored if change or the validation fails.
func (a *app) updateChaos(change func(*monkey.Config) error) error {
	return a.withBucket(topology.BucketChaos, func(ctx context.Context, kv jetstream.KeyValue) error {
		c, rev, err := monkey.GetConfig(ctx, kv)
		if err != nil {
			return err
		}
		if err := change(&c); err != nil {
			return err
		}
		b, err := monkey.PutConfig(ctx, kv, c, rev)
		if errors.Is(err, monkey.ErrConfigChanged) {
			return fmt.Errorf("chaos config changed meanwhile; run it again")
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(a.out, string(b))
		return nil
	})
}

var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// parseDays reads "mon-fri" or "mon,wed,fri".
func parseDays(s string) ([]time.Weekday, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if from, to, ok := strings.Cut(s, "-"); ok {
		a, ok1 := dayNames[from]
		b, ok2 := dayNames[to]
		if !ok1 || !ok2 || b < a {
			return nil, fmt.Errorf("--days %q: want a range like mon-fri", s)
		}
		var out []time.Weekday
		for d := a; d <= b; d++ {
			out = append(out, d)
		}
		return out, nil
	}
	var out []time.Weekday
	for _, n := range strings.Split(s, ",") {
		d, ok := dayNames[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("--days: %q is not a day (sun..sat)", n)
		}
		out = append(out, d)
	}
	return out, nil
}

// request calls a service's micro endpoint with a JSON body (a string is
// sent as it is) and decodes the answer into out.
func (a *app) request(service, endpoint string, body, out any) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.close()
	var b []byte
	if s, ok := body.(string); ok {
		b = []byte(s)
	} else if b, err = json.Marshal(body); err != nil {
		return err
	}
	msg, err := c.nc.Request(natsx.EndpointSubject(service, endpoint), b, 15*time.Second)
	if err != nil {
		return fmt.Errorf("%s %s: %w (is `redblack up` running?)", service, endpoint, err)
	}
	if e := msg.Header.Get("Nats-Service-Error"); e != "" {
		return fmt.Errorf("%s %s: %s", service, endpoint, e)
	}
	return json.Unmarshal(msg.Data, out)
}
