package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

func (a *app) eventsCmd() *cobra.Command {
	var service, releaseID string
	var since time.Duration
	var follow, asJSON bool
	cmd := &cobra.Command{
		Use:   "events [--service S] [--release ID] [--since 1h] [--follow] [--json]",
		Short: "Show the audit trail: release, fleet and chaos events from the streams",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if service != "" {
				if err := subjects.ValidateService(service); err != nil {
					return err
				}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			if service != "" && !c.isTeam() { // a team's calls say it themselves
				if err := c.serviceExists(service); err != nil {
					return err
				}
			}
			start := from{}
			if since > 0 {
				start.time = time.Now().Add(-since)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p := &eventPrinter{a: a, json: asJSON, release: releaseID, follow: follow}
			sources := []struct {
				stream  string
				filters []string
			}{
				{topology.StreamReleases, []string{subjects.AllReleases(service)}},
				// one filter per consumer: a team's permissions name the
				// filter in the consumer-create subject
				{topology.StreamFleet, []string{subjects.AllFleet(service)}},
				{topology.StreamFleet, []string{subjects.AllChaos(service)}},
			}
			var wg sync.WaitGroup
			errs := make([]error, len(sources))
			for i, src := range sources {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = c.tail(ctx, src.stream, src.filters, start, follow, p.add)
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil && ctx.Err() == nil {
					return err
				}
			}
			return p.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&service, "service", "", "only this service's events")
	f.StringVar(&releaseID, "release", "", "only this release's events")
	f.DurationVar(&since, "since", 0, "only events of the last DURATION (e.g. 1h); default all")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	f.BoolVar(&asJSON, "json", false, "print raw CloudEvents, one per line")
	return cmd
}

// serviceExists refuses a service that has no spec: its events would be
// an empty table that looks like a quiet service (a misspelt name).
func (c *client) serviceExists(service string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := c.kv(ctx, topology.BucketServices)
	if err != nil {
		return err
	}
	if _, err := spec.Get(ctx, kv, service); errors.Is(err, spec.ErrNotFound) {
		return fmt.Errorf("no service %q: `redblack service list` names them", service)
	} else if err != nil {
		return err
	}
	return nil
}

// eventPrinter prints events as a table (sorted by time when not following)
// or as JSON lines.
type eventPrinter struct {
	a       *app
	json    bool
	release string
	follow  bool
	mu      sync.Mutex
	rows    []seen
}

// releaseOf is the release id of an event; for a bare request body it is
// the id the intake gives it, req-<stream sequence>.
func releaseOf(s seen) string {
	if s.bad == nil {
		return s.ev.ReleaseID
	}
	if strings.HasSuffix(s.subject, ".requested") {
		return fmt.Sprintf("req-%d", s.seq)
	}
	return ""
}

func (p *eventPrinter) add(s seen) error {
	if p.release != "" && releaseOf(s) != p.release {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.follow {
		p.print(s, nil)
		return nil
	}
	p.rows = append(p.rows, s)
	return nil
}

func (p *eventPrinter) flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	sort.SliceStable(p.rows, func(i, j int) bool { return when(p.rows[i]).Before(when(p.rows[j])) })
	tw := newTable(p.a.out)
	if !p.json && !p.follow {
		fmt.Fprintln(tw, "TIME\tTYPE\tSERVICE\tRELEASE\tDETAIL")
	}
	for _, s := range p.rows {
		p.print(s, tw)
	}
	if !p.json && len(p.rows) == 0 && !p.follow {
		fmt.Fprintln(p.a.err, "no events match")
	}
	return tw.Flush()
}

func when(s seen) time.Time {
	if s.bad == nil {
		return s.ev.Time
	}
	return s.stored
}

func (p *eventPrinter) print(s seen, tw *tabwriter.Writer) {
	if p.json {
		b := s.raw
		if s.bad == nil {
			b, _ = json.Marshal(s.ev)
		}
		fmt.Fprintf(p.a.out, "%s\n", b)
		return
	}
	typ, detail := "", ""
	if s.bad == nil {
		typ, detail = shortType(s.ev.Type), describe(s.ev)
	} else {
		typ = s.subject[:strings.LastIndex(s.subject, ".")+1]
		typ = "raw " + strings.TrimPrefix(s.subject, typ)
		detail = strings.ToValidUTF8(string(s.raw), "?")
		if len(detail) > 80 {
			detail = detail[:80] + "…"
		}
	}
	svc := ""
	if parsed, err := subjects.Parse(s.subject); err == nil {
		svc = parsed.Service
	}
	line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\n", when(s).Local().Format("15:04:05.000"), typ, svc, releaseOf(s), detail)
	if tw != nil {
		fmt.Fprint(tw, line)
		return
	}
	fmt.Fprint(p.a.out, strings.ReplaceAll(line, "\t", "  "))
}
