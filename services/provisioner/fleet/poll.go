package fleet

import (
	"context"
	"time"

	"github.com/redblack/redblack/shared/discovery"
)

// Poll reports the changes of a provider that reports none itself (the aws
// provider): every interval it lists every group and reports what differs
// from the last listing — a new instance as Started (and Up if it already
// is), a state change as Up or Down, a vanished instance as Terminated.
// The first listing is compared with known (what was reported before, by
// id; nil: nothing), so an observer that takes over from another does not
// report the fleet again. It returns when ctx ends.
func Poll(ctx context.Context, p Provider, every time.Duration, known map[string]Instance, observe Observer) {
	last := known
	if last == nil {
		last = map[string]Instance{}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, every*4+5*time.Second)
		groups, err := p.ListGroups(lctx, "")
		cancel()
		if err == nil {
			now := map[string]Instance{}
			for _, g := range groups {
				for _, i := range g.Instances {
					now[i.ID] = i
				}
			}
			for _, c := range Diff(last, now) {
				observe(c)
			}
			last = now
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Diff lists the changes from one listing of instances (by id) to the next.
func Diff(before, after map[string]Instance) []Change {
	var out []Change
	for id, i := range after {
		old, seen := before[id]
		switch {
		case !seen:
			out = append(out, Change{Type: Started, Instance: i, Reason: "launched"})
			if i.State == discovery.StateUp {
				out = append(out, Change{Type: Up, Instance: i, Reason: "healthy"})
			}
		case old.State != i.State && i.State == discovery.StateUp:
			out = append(out, Change{Type: Up, Instance: i, Reason: "healthy"})
		case old.State != i.State && i.State == discovery.StateDown:
			out = append(out, Change{Type: Down, Instance: i, Reason: "unhealthy"})
		}
	}
	for id, i := range before {
		if _, ok := after[id]; !ok {
			i.State = discovery.StateTerminated
			out = append(out, Change{Type: Terminated, Instance: i, Reason: "gone from its group"})
		}
	}
	return out
}
