// Package local is the provider that runs server groups as real processes on
// this machine: each instance is a child process on a free loopback port in
// its own process group, health checked over HTTP, replaced when it dies (as
// an Auto Scaling group does), and recorded on disk so a restarted
// provisioner re-adopts what it started — or kills it.
package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/procfs"
	"github.com/redblack/redblack/shared/rolling"
	"github.com/redblack/redblack/shared/spec"
)

var _ fleet.Provider = (*Local)(nil)

// Config configures the local provider.
type Config struct {
	// Dir holds groups/, instances/ (pid records) and logs/.
	Dir string
	// GracePeriod is the time between SIGTERM and SIGKILL (default 5 s).
	GracePeriod time.Duration
	// StartupProbe is the health check cadence of a starting instance
	// (default 100 ms); up and down instances are checked every spec
	// health interval.
	StartupProbe time.Duration
	// CheckTimeout bounds one health check (default 1 s).
	CheckTimeout time.Duration
	// BackoffBase and BackoffMax bound the restart delay after instances
	// that died before being up (default 250 ms, 10 s).
	BackoffBase, BackoffMax time.Duration
	// CrashLoopCount crashes within CrashLoopWindow make a crash loop
	// (default 3 in 30 s).
	CrashLoopCount  int
	CrashLoopWindow time.Duration
	// PortHold keeps an exited instance's port from being handed to
	// another instance (default 60 s: longer than the instances bucket's
	// TTL, so no stale entry can point at a new instance).
	PortHold time.Duration
	// SecretsDir holds the secrets instances may be given, one directory
	// per service (default <Dir>/../secrets, i.e. <data>/secrets).
	SecretsDir string
	// VolumesDir holds the stateful services' volumes, one directory per
	// slot: <VolumesDir>/<service>/<slot> (default <Dir>/../volumes, i.e.
	// <data>/volumes). The provider never deletes one.
	VolumesDir string
	// Sandbox says how instances run (default: each as its service's own
	// unprivileged user, in a PID namespace of its own, when the provider
	// runs as root).
	Sandbox Sandbox
}

func (c *Config) defaults() {
	c.Sandbox.defaults()
	if c.GracePeriod == 0 {
		c.GracePeriod = 5 * time.Second
	}
	if c.PortHold == 0 {
		c.PortHold = time.Minute
	}
	if c.StartupProbe == 0 {
		c.StartupProbe = 100 * time.Millisecond
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = time.Second
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = 250 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 10 * time.Second
	}
	if c.CrashLoopCount == 0 {
		c.CrashLoopCount = 3
	}
	if c.CrashLoopWindow == 0 {
		c.CrashLoopWindow = 30 * time.Second
	}
}

// Local runs groups as processes.
type Local struct {
	cfg     Config
	observe fleet.Observer
	client  *http.Client
	ctx     context.Context
	cancel  context.CancelFunc

	mu     sync.Mutex
	groups map[string]*group
	closed bool // Close has begun: no group is created after it

	owner string // in every instance's environment: REDBLACK_OWNER
	uids  *uids  // the services' sandbox users

	pmu   sync.Mutex
	ports map[int]time.Time   // port → held until (zero: an instance has it)
	free  func() (int, error) // the kernel's free port (tests: a fixed order)

	vmu     sync.Mutex
	volumes map[string]string // volume directory → the instance whose process holds it
}

// claimVolume gives the volume dir to instance id unless another live
// process holds it: one writer per volume, whichever group runs the slot.
func (l *Local) claimVolume(dir, id string) bool {
	l.vmu.Lock()
	defer l.vmu.Unlock()
	if holder, ok := l.volumes[dir]; ok && holder != id {
		return false
	}
	l.volumes[dir] = id
	return true
}

// releaseVolume frees the volume dir once instance id's process is gone.
func (l *Local) releaseVolume(dir, id string) {
	l.vmu.Lock()
	defer l.vmu.Unlock()
	if l.volumes[dir] == id {
		delete(l.volumes, dir)
	}
}

// VolumeDir is the directory of a stateful service's slot's volume.
func (l *Local) VolumeDir(service, slot string) string {
	return filepath.Join(l.cfg.volumesRoot(), service, slot)
}

// volumesRoot is VolumesDir, or <Dir>/../volumes.
func (c Config) volumesRoot() string {
	if c.VolumesDir != "" {
		return c.VolumesDir
	}
	return filepath.Join(filepath.Dir(filepath.Clean(c.Dir)), "volumes")
}

// pickPort returns a free loopback port that no instance of this provider
// had within PortHold: a stale discovery entry (until its TTL) or a
// router's pooled connection may still point at a port whose instance is
// gone, and must never reach another instance there.
func (l *Local) pickPort() (int, error) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	now := time.Now()
	for port, until := range l.ports {
		if !until.IsZero() && now.After(until) {
			delete(l.ports, port)
		}
	}
	free := l.free
	if free == nil {
		free = freePort
	}
	for range 100 {
		port, err := free()
		if err != nil {
			return 0, err
		}
		if _, held := l.ports[port]; !held {
			l.ports[port] = time.Time{}
			return port, nil
		}
	}
	return 0, errors.New("local: no free port outside the held ones in 100 tries")
}

// releasePort holds the port of an instance that exited for PortHold.
func (l *Local) releasePort(port int) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	l.ports[port] = time.Now().Add(l.cfg.PortHold)
}

// Open starts the provider on cfg.Dir: groups recorded there are resumed,
// their live instances re-adopted (same pid and start time), dead ones
// forgotten and replaced, and instances of unknown groups killed.
func Open(cfg Config, observe fleet.Observer) (*Local, error) {
	cfg.defaults()
	for _, d := range []string{"groups", "instances", "logs"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
	}
	if observe == nil {
		observe = func(fleet.Change) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Local{
		cfg: cfg, observe: observe, ctx: ctx, cancel: cancel, groups: map[string]*group{}, ports: map[int]time.Time{}, volumes: map[string]string{},
		client: &http.Client{Timeout: cfg.CheckTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: 10 * time.Second}},
	}
	l.uids = &uids{path: filepath.Join(cfg.Dir, "uids.json"), base: cfg.Sandbox.UIDBase}
	owner, err := ownerID(filepath.Join(cfg.Dir, "owner"))
	if err != nil {
		cancel()
		return nil, err
	}
	l.owner = owner
	if err := l.adopt(); err != nil {
		cancel()
		return nil, err
	}
	return l, nil
}

// OwnerEnv names the provider that started an instance: REDBLACK_OWNER=<id
// of the data directory>, so that a restart finds every instance it started,
// recorded or not.
const OwnerEnv = "REDBLACK_OWNER"

// ownerID reads the provider's id from path, creating it on first use.
func ownerID(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("local: %w", err)
	}
	s := hex.EncodeToString(id[:])
	if err := os.WriteFile(path, []byte(s+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("local: %w", err)
	}
	return s, nil
}

// reapOrphans kills the processes this provider started that no record
// names: an instance started just before a crash, before its pid record
// was written, would otherwise run (and listen) for ever with no owner.
func (l *Local) reapOrphans(kept map[int]bool) {
	procs, _ := os.ReadDir("/proc")
	want := []byte(OwnerEnv + "=" + l.owner)
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || kept[pid] || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + p.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				_, ticks, _ := procfs.Stat(pid)
				stopProcess(pid, ticks, l.cfg.GracePeriod)
				break
			}
		}
	}
}

// record is what is kept on disk of a group.
type groupRecord struct {
	Spec    fleet.GroupSpec `json:"spec"`
	Desired int             `json:"desired"`
	Created time.Time       `json:"created"`
	Seq     int             `json:"seq"`
	// Slots are a stateful group's slots now (its spec's are those it was
	// created with).
	Slots []int `json:"slots,omitempty"`
}

// instanceRecord is what is kept on disk of an instance.
type instanceRecord struct {
	fleet.Instance
	StartTicks uint64 `json:"start_ticks"`
	// SlotIndex and Volume: a stateful instance's slot and the volume
	// its process holds.
	SlotIndex int    `json:"slot_index,omitempty"`
	Volume    string `json:"volume,omitempty"`
}

func (l *Local) groupFile(name string) string {
	return filepath.Join(l.cfg.Dir, "groups", name+".json")
}
func (l *Local) instanceFile(id string) string {
	return filepath.Join(l.cfg.Dir, "instances", id+".json")
}

// LogFile is where an instance's stdout and stderr go.
func (l *Local) LogFile(group, id string) string {
	return filepath.Join(l.cfg.Dir, "logs", group, id+".log")
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (l *Local) adopt() error {
	files, _ := filepath.Glob(filepath.Join(l.cfg.Dir, "groups", "*.json"))
	for _, f := range files {
		var rec groupRecord
		b, err := os.ReadFile(f)
		if err != nil || json.Unmarshal(b, &rec) != nil {
			os.Remove(f)
			continue
		}
		l.groups[rec.Spec.Group] = newGroup(l, rec)
	}
	files, _ = filepath.Glob(filepath.Join(l.cfg.Dir, "instances", "*.json"))
	kept := map[int]bool{}
	for _, f := range files {
		var rec instanceRecord
		b, err := os.ReadFile(f)
		if err != nil || json.Unmarshal(b, &rec) != nil {
			os.Remove(f)
			continue
		}
		g := l.groups[rec.Group]
		live := rec.PID > 0 && procfs.Alive(rec.PID, rec.StartTicks)
		if live && g != nil {
			kept[rec.PID] = true
		}
		switch {
		case g == nil && live: // not ours to keep: no process is leaked
			stopProcess(rec.PID, rec.StartTicks, l.cfg.GracePeriod)
			os.Remove(f)
		case !live:
			os.Remove(f)
		default:
			inst := &instance{rec: rec, exited: make(chan struct{})}
			inst.rec.State = discovery.StateStarting
			if rec.Volume != "" {
				l.claimVolume(rec.Volume, rec.ID)
			}
			go inst.watchAdopted(l.ctx, l.cfg.StartupProbe)
			g.instances[rec.ID] = inst
		}
	}
	l.reapOrphans(kept)
	for _, g := range l.groups {
		g.start()
	}
	return nil
}

// stopProcess stops an adopted process group: SIGTERM, SIGKILL after grace.
func stopProcess(pid int, ticks uint64, grace time.Duration) {
	_ = killGroup(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for procfs.Alive(pid, ticks) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if procfs.Alive(pid, ticks) {
		_ = killGroup(pid, syscall.SIGKILL)
	}
}

// CreateGroup implements fleet.Provider.
func (l *Local) CreateGroup(ctx context.Context, s fleet.GroupSpec) (fleet.Group, error) {
	if len(s.Artifact.Command) == 0 {
		return fleet.Group{}, fmt.Errorf("local: %w: no command", fleet.ErrBadArtifact)
	}
	if _, err := exec.LookPath(s.Artifact.Command[0]); err != nil {
		return fleet.Group{}, fmt.Errorf("local: %w: %v", fleet.ErrBadArtifact, err)
	}
	if s.Capacity < 0 {
		return fleet.Group{}, fmt.Errorf("local: capacity %d", s.Capacity)
	}
	if s.Stateful && s.SlotCount < 1 {
		return fleet.Group{}, fmt.Errorf("local: stateful group %s: no slot count", s.Group)
	}
	if err := validSlots(s.Slots, s.SlotCount); err != nil {
		return fleet.Group{}, err
	}
	l.mu.Lock()
	if g, ok := l.groups[s.Group]; ok {
		l.mu.Unlock()
		return g.describe(), nil
	}
	if l.closed {
		l.mu.Unlock()
		return fleet.Group{}, fmt.Errorf("local: create %s: %w", s.Group, errClosed)
	}
	rec := groupRecord{Spec: s, Desired: s.Capacity, Created: time.Now().UTC()}
	if s.Stateful {
		rec.Slots, rec.Desired = slices.Clone(s.Slots), len(s.Slots)
	}
	if err := writeJSON(l.groupFile(s.Group), rec); err != nil {
		l.mu.Unlock()
		return fleet.Group{}, fmt.Errorf("local: record group %s: %w", s.Group, err)
	}
	if err := os.MkdirAll(filepath.Join(l.cfg.Dir, "logs", s.Group), 0o755); err != nil {
		l.mu.Unlock()
		return fleet.Group{}, fmt.Errorf("local: %w", err)
	}
	g := newGroup(l, rec)
	l.groups[s.Group] = g
	g.start() // before Close can see the group: it halts what start set
	l.mu.Unlock()
	return g.describe(), nil
}

// errClosed: the provider is closing, and creates no group.
var errClosed = errors.New("the provider is closed")

func (l *Local) group(name string) (*group, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g, ok := l.groups[name]
	if !ok {
		return nil, fmt.Errorf("local: %s: %w", name, fleet.ErrGroupNotFound)
	}
	return g, nil
}

// DescribeGroup implements fleet.Provider.
func (l *Local) DescribeGroup(ctx context.Context, name string) (fleet.Group, error) {
	g, err := l.group(name)
	if err != nil {
		return fleet.Group{}, err
	}
	return g.describe(), nil
}

// CPU implements fleet.CPUMeter: the CPU time each live instance of the
// group has used since it started, from /proc.
func (l *Local) CPU(ctx context.Context, name string) (map[string]time.Duration, error) {
	g, err := l.group(name)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	recs := make([]instanceRecord, 0, len(g.instances))
	for _, i := range g.instances {
		if !i.stopping && i.rec.PID > 0 {
			recs = append(recs, i.rec)
		}
	}
	g.mu.Unlock()
	out := make(map[string]time.Duration, len(recs))
	for _, r := range recs {
		if d, err := procfs.CPU(r.PID, r.StartTicks); err == nil {
			out[r.ID] = d
		}
	}
	return out, nil
}

// ListGroups implements fleet.Provider.
func (l *Local) ListGroups(ctx context.Context, service string) ([]fleet.Group, error) {
	l.mu.Lock()
	gs := make([]*group, 0, len(l.groups))
	for _, g := range l.groups {
		if service == "" || g.spec.Service == service {
			gs = append(gs, g)
		}
	}
	l.mu.Unlock()
	out := make([]fleet.Group, len(gs))
	for i, g := range gs {
		out[i] = g.describe()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Group < out[j].Spec.Group })
	return out, nil
}

// Instances implements fleet.Provider.
func (l *Local) Instances(ctx context.Context, name string) ([]fleet.Instance, error) {
	g, err := l.DescribeGroup(ctx, name)
	return g.Instances, err
}

// Resize implements fleet.Provider. A stateful group is sized by its
// slots (SetSlots).
func (l *Local) Resize(ctx context.Context, name string, capacity int) error {
	if capacity < 0 {
		return fmt.Errorf("local: capacity %d", capacity)
	}
	g, err := l.group(name)
	if err != nil {
		return err
	}
	if g.spec.Stateful {
		return fmt.Errorf("local: %s is stateful: its slots size it, not a capacity", name)
	}
	return g.resize(capacity)
}

// SetSlots implements fleet.Slotter.
func (l *Local) SetSlots(ctx context.Context, name string, slots []int) error {
	g, err := l.group(name)
	if err != nil {
		return err
	}
	if !g.spec.Stateful {
		return fmt.Errorf("local: %s is not stateful: it has no slots", name)
	}
	if err := validSlots(slots, g.spec.SlotCount); err != nil {
		return err
	}
	return g.setSlots(slots)
}

// validSlots refuses repeated slots and slots outside 0..count-1.
func validSlots(slots []int, count int) error {
	seen := map[int]bool{}
	for _, s := range slots {
		if s < 0 || s >= count || seen[s] {
			return fmt.Errorf("local: slots %v: want distinct slots 0..%d", slots, count-1)
		}
		seen[s] = true
	}
	return nil
}

// DestroyGroup implements fleet.Provider.
func (l *Local) DestroyGroup(ctx context.Context, name string) error {
	l.mu.Lock()
	g, ok := l.groups[name]
	delete(l.groups, name)
	l.mu.Unlock()
	if !ok {
		return nil
	}
	g.halt()
	g.stopAll(true)
	if err := os.Remove(l.groupFile(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("local: remove %s: %w", name, err)
	}
	return nil
}

// TerminateInstance implements fleet.Provider: SIGKILL, then the group
// replaces the instance.
func (l *Local) TerminateInstance(ctx context.Context, groupName, id string) error {
	g, err := l.group(groupName)
	if err != nil {
		return err
	}
	return g.kill(id)
}

// Close stops the supervisors. With stopInstances every instance is stopped
// (SIGTERM, then SIGKILL after the grace period) and forgotten, though the
// groups stay recorded and come back at the next Open; without, the
// instances keep running for the next Open to re-adopt.
func (l *Local) Close(stopInstances bool) {
	l.mu.Lock()
	l.closed = true
	gs := make([]*group, 0, len(l.groups))
	for _, g := range l.groups {
		gs = append(gs, g)
	}
	l.mu.Unlock()
	for _, g := range gs {
		g.halt()
	}
	if stopInstances {
		var wg sync.WaitGroup
		for _, g := range gs {
			wg.Add(1)
			go func() { defer wg.Done(); g.stopAll(false) }()
		}
		wg.Wait()
	}
	l.cancel() // after stopAll: adopted instances' watchers report their exits
	l.client.CloseIdleConnections()
}

// environment is an instance's whole environment: PATH and HOME, the
// spec's env and secrets, PORT and the REDBLACK_* variables. Nothing else of
// the provisioner's own environment (its cloud credentials, its NATS creds)
// reaches an instance.
func (l *Local) environment(s fleet.GroupSpec, id string, port int) ([]string, error) {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if os.Getenv("PATH") == "" {
		env[0] = "PATH=/usr/local/bin:/usr/bin:/bin"
	}
	for k, v := range s.Artifact.Env {
		env = append(env, k+"="+v)
	}
	for k, name := range s.Artifact.EnvSecrets {
		if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			return nil, fmt.Errorf("local: secret name %q is not a file name", name)
		}
		b, err := os.ReadFile(filepath.Join(l.secretsDir(), s.Service, name))
		if err != nil {
			return nil, fmt.Errorf("local: secret %s of %s: %w", name, s.Service, err)
		}
		env = append(env, k+"="+strings.TrimRight(string(b), "\n"))
	}
	return append(env, OwnerEnv+"="+l.owner,
		"PORT="+strconv.Itoa(port), "REDBLACK_SERVICE="+s.Service, "REDBLACK_GROUP="+s.Group,
		"REDBLACK_VERSION="+s.Version, "REDBLACK_INSTANCE="+id), nil
}

// VolumeEnv and SlotEnv tell a stateful instance its volume's directory
// and its slot's name.
const (
	VolumeEnv = "REDBLACK_VOLUME"
	SlotEnv   = "REDBLACK_SLOT"
)

func (l *Local) secretsDir() string {
	if l.cfg.SecretsDir != "" {
		return l.cfg.SecretsDir
	}
	return filepath.Join(filepath.Dir(filepath.Clean(l.cfg.Dir)), "secrets")
}

// start launches one instance process; slot ≥ 0 runs a stateful group's
// slot with its volume, which the caller has claimed.
func (l *Local) start(s fleet.GroupSpec, id string, slot int) (*instance, error) {
	port, err := l.pickPort()
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			l.releasePort(port)
		}
	}()
	logf, err := os.OpenFile(l.LogFile(s.Group, id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	env, err := l.environment(s, id, port)
	if err != nil {
		return nil, err
	}
	var slotName, volume string
	if slot >= 0 {
		slotName = rolling.SlotName(s.Service, slot)
		volume = l.VolumeDir(s.Service, slotName)
		if err := os.MkdirAll(volume, 0o700); err != nil {
			return nil, fmt.Errorf("local: volume of %s: %w", slotName, err)
		}
		env = append(env, VolumeEnv+"="+volume, SlotEnv+"="+slotName)
	}
	argv := s.Artifact.Command
	var cmd *exec.Cmd
	if l.sandboxing() {
		var vf *os.File
		if cmd, vf, err = l.sandboxed(argv, env, s.Service, volume); err != nil {
			return nil, err
		}
		if vf != nil {
			defer vf.Close() // the child has its own once started
		}
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	_, ticks, _ := procfs.Stat(cmd.Process.Pid)
	inst := &instance{
		rec: instanceRecord{Instance: fleet.Instance{
			ID: id, Service: s.Service, Group: s.Group, Version: s.Version,
			Address: "127.0.0.1:" + strconv.Itoa(port), State: discovery.StateStarting,
			Started: time.Now().UTC(), PID: cmd.Process.Pid, Slot: slotName, SlotCount: s.SlotCount,
		}, StartTicks: ticks, SlotIndex: slot, Volume: volume},
		exited: make(chan struct{}),
	}
	started = true
	go func() {
		err := cmd.Wait()
		inst.exitErr = describeExit(err)
		l.releasePort(port)
		close(inst.exited)
	}()
	if err := writeJSON(l.instanceFile(id), inst.rec); err != nil {
		_ = killGroup(inst.rec.PID, syscall.SIGKILL)
		return nil, err
	}
	return inst, nil
}

func describeExit(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("killed by %s", ws.Signal())
		}
		return fmt.Errorf("exited with status %d", ee.ExitCode())
	}
	if err == nil {
		return errors.New("exited with status 0")
	}
	return err
}

// check runs one health check.
// check health checks the instance at addr: an HTTP GET of the health
// path (2xx or 3xx is healthy), or for a gRPC service grpc.health.v1's
// Check of the whole server (SERVING is healthy).
func (l *Local) check(addr string, gs fleet.GroupSpec) error {
	if gs.Protocol == spec.ProtocolGRPC {
		return l.checkGRPC(addr)
	}
	path := gs.Health.Path
	resp, err := l.client.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("health check %s: %s", path, resp.Status)
	}
	return nil
}

// checkGRPC asks the instance's gRPC health service, on a connection of
// its own (closed after: a check every interval per instance costs a
// handshake, and leaves nothing to clean up when the instance goes).
func (l *Local) checkGRPC(addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.CheckTimeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("gRPC health check: %w", err)
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("gRPC health check: %s", st)
	}
	return nil
}

func trimReason(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
