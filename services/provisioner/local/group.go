package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/procfs"
	"github.com/redblack/redblack/shared/rolling"
)

// instance is one process of a group. Its fields are guarded by the group's
// mutex, except exited and exitErr (set once by the waiter).
type instance struct {
	rec      instanceRecord
	exited   chan struct{}
	exitErr  error
	stopping bool // its exit was asked for: not replaced
	killed   bool // terminated on request: replaced, not a crash
	everUp   bool
	passes   int
	fails    int
	checking bool
	nextTick time.Time
	replaces string
}

// watchAdopted closes exited when an adopted process (not our child) dies.
func (i *instance) watchAdopted(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !procfs.Alive(i.rec.PID, i.rec.StartTicks) {
				i.exitErr = fmt.Errorf("exited (adopted process)")
				close(i.exited)
				return
			}
		}
	}
}

type healthResult struct {
	id  string
	err error
	at  time.Time
}

// group supervises one server group: it keeps the desired number of
// instances running, health checks them and reports every change.
type group struct {
	l    *Local
	spec fleet.GroupSpec

	fileMu sync.Mutex // orders writes of the group's record (persist)

	mu           sync.Mutex
	created      time.Time
	desired      int
	slots        []int // a stateful group's slots (desired is their number)
	seq          int
	instances    map[string]*instance
	crashes      []time.Time
	consecutive  int
	nextStart    time.Time
	loopReported bool
	orphans      []string // terminated ids waiting for a replacement

	results chan healthResult
	wake    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

func newGroup(l *Local, rec groupRecord) *group {
	return &group{
		l: l, spec: rec.Spec, created: rec.Created, desired: rec.Desired, seq: rec.Seq, slots: rec.Slots,
		instances: map[string]*instance{}, results: make(chan healthResult, 64), wake: make(chan struct{}, 1),
	}
}

func (g *group) start() {
	ctx, cancel := context.WithCancel(g.l.ctx)
	g.cancel, g.done = cancel, make(chan struct{})
	go g.supervise(ctx)
}

// halt stops the supervisor (the instances keep running).
func (g *group) halt() {
	if g.cancel != nil {
		g.cancel()
		<-g.done
	}
}

func (g *group) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *group) describe() fleet.Group {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := fleet.Group{Spec: g.spec, Desired: g.desired, Created: g.created}
	out.Spec.Capacity = g.desired
	if g.spec.Stateful {
		out.Spec.Slots = slices.Clone(g.slots)
	}
	for _, i := range g.instances {
		if !i.stopping {
			out.Instances = append(out.Instances, i.rec.Instance)
		}
	}
	sort.Slice(out.Instances, func(a, b int) bool { return out.Instances[a].Started.Before(out.Instances[b].Started) })
	return out
}

func (g *group) record() groupRecord {
	return groupRecord{Spec: g.spec, Desired: g.desired, Created: g.created, Seq: g.seq, Slots: slices.Clone(g.slots)}
}

// persist writes the group's record. The snapshot is taken under the file
// lock, so concurrent writers land in order and the newest state is last.
func (g *group) persist() error {
	g.fileMu.Lock()
	defer g.fileMu.Unlock()
	g.mu.Lock()
	rec := g.record()
	g.mu.Unlock()
	return writeJSON(g.l.groupFile(g.spec.Group), rec)
}

func (g *group) resize(n int) error {
	g.mu.Lock()
	g.desired = n
	g.mu.Unlock()
	if err := g.persist(); err != nil {
		return fmt.Errorf("local: record %s: %w", g.spec.Group, err)
	}
	g.poke()
	return nil
}

// setSlots makes a stateful group run exactly these slots.
func (g *group) setSlots(slots []int) error {
	g.mu.Lock()
	g.slots, g.desired = slices.Clone(slots), len(slots)
	g.mu.Unlock()
	if err := g.persist(); err != nil {
		return fmt.Errorf("local: record %s: %w", g.spec.Group, err)
	}
	g.poke()
	return nil
}

func (g *group) kill(id string) error {
	g.mu.Lock()
	i, ok := g.instances[id]
	if !ok || i.stopping {
		g.mu.Unlock()
		return fmt.Errorf("local: %s in %s: %w", id, g.spec.Group, fleet.ErrInstanceNotFound)
	}
	i.killed = true
	pid := i.rec.PID
	g.mu.Unlock()
	if err := killGroup(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("local: kill %s: %w", id, err)
	}
	return nil
}

// supervise is the only goroutine that changes instance states and reports
// changes, so each instance's changes are reported in order.
func (g *group) supervise(ctx context.Context) {
	defer close(g.done)
	t := time.NewTicker(g.l.cfg.StartupProbe)
	defer t.Stop()
	for {
		g.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case r := <-g.results:
			g.applyHealth(r)
		case <-g.wake:
		case <-t.C:
		}
	}
}

// emit reports changes outside the lock.
func (g *group) emit(changes []fleet.Change) {
	for _, c := range changes {
		g.l.observe(c)
	}
}

func (g *group) reconcile(ctx context.Context) {
	now := time.Now()
	var changes []fleet.Change
	g.mu.Lock()
	// 1. exits
	for id, i := range g.instances {
		select {
		case <-i.exited:
		default:
			continue
		}
		delete(g.instances, id)
		os.Remove(g.l.instanceFile(id))
		if i.rec.Volume != "" {
			g.l.releaseVolume(i.rec.Volume, id)
		}
		reason := i.exitErr.Error()
		switch {
		case i.stopping:
			reason = "stopped: " + reason
		case i.killed:
			reason = "terminated on request: " + reason
			g.orphans = append(g.orphans, id)
		default:
			g.orphans = append(g.orphans, id)
			if !i.everUp {
				reason = "crashed before it was up: " + reason
				changes = append(changes, g.crashed(now, i)...)
			}
		}
		i.rec.State = discovery.StateTerminated
		changes = append(changes, fleet.Change{Type: fleet.Terminated, Instance: i.rec.Instance, Reason: reason})
	}
	// 2. health checks that are due
	for _, i := range g.instances {
		if i.stopping || i.checking || now.Before(i.nextTick) {
			continue
		}
		every := g.spec.Health.Interval.D()
		if i.rec.State == discovery.StateStarting {
			every = g.l.cfg.StartupProbe
		}
		i.checking, i.nextTick = true, now.Add(every)
		go func(id, addr string) {
			err := g.l.check(addr, g.spec)
			select {
			case g.results <- healthResult{id: id, err: err, at: time.Now().UTC()}:
			case <-ctx.Done():
			}
		}(i.rec.ID, i.rec.Address)
	}
	// 3. capacity: a number of instances, or a stateful group's slots
	live := g.live()
	var toStart []int // slots, or -1 for each ordinary instance missing
	if g.spec.Stateful {
		want := map[int]bool{}
		for _, s := range g.slots {
			want[s] = true
		}
		have := map[int]bool{}
		for _, i := range live {
			if !want[i.rec.SlotIndex] || have[i.rec.SlotIndex] {
				i.stopping = true
				go g.stop(i)
				continue
			}
			have[i.rec.SlotIndex] = true
		}
		for _, s := range g.slots {
			if !have[s] {
				toStart = append(toStart, s)
			}
		}
	} else {
		for len(live) > g.desired { // newest first
			i := live[len(live)-1]
			live = live[:len(live)-1]
			i.stopping = true
			go g.stop(i)
		}
		for range g.desired - len(live) {
			toStart = append(toStart, -1)
		}
	}
	g.mu.Unlock()
	g.emit(changes)
	changes = nil
	for _, slot := range toStart {
		if ctx.Err() != nil {
			break
		}
		g.mu.Lock()
		if now.Before(g.nextStart) {
			g.mu.Unlock()
			break
		}
		g.seq++
		id := fmt.Sprintf("%s-%d", g.spec.Group, g.seq)
		g.mu.Unlock()
		volume := ""
		if slot >= 0 {
			// one process per volume: the slot's instance in another group
			// (the version it replaces) must have exited first
			volume = g.l.VolumeDir(g.spec.Service, rolling.SlotName(g.spec.Service, slot))
			if !g.l.claimVolume(volume, id) {
				continue
			}
		}
		_ = g.persist()
		inst, err := g.l.start(g.spec, id, slot)
		g.mu.Lock()
		if err != nil {
			if volume != "" {
				g.l.releaseVolume(volume, id)
			}
			failed := &instance{rec: instanceRecord{Instance: fleet.Instance{ID: id, Service: g.spec.Service, Group: g.spec.Group, Version: g.spec.Version, State: discovery.StateTerminated}},
				exitErr: errors.New("could not start: " + trimReason(err.Error()))} // the crash loop's "last"
			changes = append(changes, fleet.Change{Type: fleet.Terminated, Instance: failed.rec.Instance, Reason: failed.exitErr.Error()})
			changes = append(changes, g.crashed(time.Now(), failed)...)
			g.mu.Unlock()
			break
		}
		g.instances[id] = inst
		changes = append(changes, fleet.Change{Type: fleet.Started, Instance: inst.rec.Instance})
		if n := len(g.orphans); n > 0 {
			inst.replaces = g.orphans[0]
			g.orphans = g.orphans[1:]
			changes = append(changes, fleet.Change{Type: fleet.Replaced, Instance: inst.rec.Instance, Reason: "replaces " + inst.replaces})
		}
		g.mu.Unlock()
	}
	g.emit(changes)
}

// live returns the instances not being stopped, oldest first. Lock held.
func (g *group) live() []*instance {
	var out []*instance
	for _, i := range g.instances {
		if !i.stopping {
			out = append(out, i)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].rec.Started.Before(out[b].rec.Started) })
	return out
}

// crashed counts a crash, sets the restart backoff and reports a crash loop.
// Lock held.
func (g *group) crashed(now time.Time, i *instance) []fleet.Change {
	g.consecutive++
	g.crashes = append(g.crashes, now)
	for len(g.crashes) > 0 && now.Sub(g.crashes[0]) > g.l.cfg.CrashLoopWindow {
		g.crashes = g.crashes[1:]
	}
	d := g.l.cfg.BackoffBase
	for n := 1; n < g.consecutive && d < g.l.cfg.BackoffMax; n++ {
		d *= 2
	}
	g.nextStart = now.Add(min(d, g.l.cfg.BackoffMax))
	if len(g.crashes) >= g.l.cfg.CrashLoopCount && !g.loopReported {
		g.loopReported = true
		reason := fmt.Sprintf("%d instances died before being up within %s; last: %v; log: %s",
			len(g.crashes), g.l.cfg.CrashLoopWindow, i.exitErr, g.l.LogFile(g.spec.Group, i.rec.ID))
		return []fleet.Change{{Type: fleet.CrashLoop, Instance: i.rec.Instance, Reason: reason}}
	}
	return nil
}

func (g *group) applyHealth(r healthResult) {
	var changes []fleet.Change
	g.mu.Lock()
	i, ok := g.instances[r.id]
	if !ok || i.stopping {
		g.mu.Unlock()
		return
	}
	i.checking = false
	h := g.spec.Health
	if r.err == nil {
		i.passes, i.fails = i.passes+1, 0
		i.rec.LastHealth = r.at
		if i.rec.State != discovery.StateUp && i.passes >= h.HealthyThreshold {
			i.rec.State, i.everUp = discovery.StateUp, true
			g.consecutive, g.loopReported, g.nextStart = 0, false, time.Time{}
			changes = append(changes, fleet.Change{Type: fleet.Up, Instance: i.rec.Instance})
		}
	} else {
		i.fails, i.passes = i.fails+1, 0
		if i.rec.State == discovery.StateUp && i.fails >= h.UnhealthyThreshold {
			i.rec.State = discovery.StateDown
			changes = append(changes, fleet.Change{Type: fleet.Down, Instance: i.rec.Instance, Reason: trimReason(r.err.Error())})
		}
	}
	g.mu.Unlock()
	g.emit(changes)
}

// stop stops one instance: SIGTERM to its process group, SIGKILL after the
// grace period. The supervisor reports its exit.
func (g *group) stop(i *instance) {
	_ = killGroup(i.rec.PID, syscall.SIGTERM)
	select {
	case <-i.exited:
	case <-time.After(g.l.cfg.GracePeriod):
		_ = killGroup(i.rec.PID, syscall.SIGKILL)
		select {
		case <-i.exited:
		case <-time.After(5 * time.Second):
		}
	}
	g.poke()
}

// stopAll stops every instance in parallel, forgets them, and (report)
// reports each as terminated. The supervisor must be halted.
func (g *group) stopAll(report bool) {
	g.mu.Lock()
	all := make([]*instance, 0, len(g.instances))
	for _, i := range g.instances {
		i.stopping = true
		all = append(all, i)
	}
	g.instances = map[string]*instance{}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, i := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.stop(i)
			os.Remove(g.l.instanceFile(i.rec.ID))
			select {
			case <-i.exited:
				if i.rec.Volume != "" {
					g.l.releaseVolume(i.rec.Volume, i.rec.ID)
				}
			default: // still alive after SIGKILL: its volume stays held
			}
		}()
	}
	wg.Wait()
	if report {
		for _, i := range all {
			i.rec.State = discovery.StateTerminated
			g.l.observe(fleet.Change{Type: fleet.Terminated, Instance: i.rec.Instance, Reason: "group destroyed"})
		}
	}
}
