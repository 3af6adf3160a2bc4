// Package hosts spreads the local provider over several hosts. Each host's
// provisioner owns the instances of its host: it serves its own provider
// to the other provisioners over NATS request and reply
// (redblack.provisioner.host.<host>.<op>) and says it is alive in the
// releases bucket (host.<host>). A Provider routes each call to the host
// that owns the group, as the owner.<group> entry records, and places a
// new group on the host its spec names or, if none, on one of the live
// hosts by rendezvous hashing of the group's name. A call for a group of
// a host that is not alive fails with ErrHostDown, naming the host:
// never a silent "no such group".
package hosts

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
)

// Errors a caller branches on.
var (
	// ErrHostDown: the group's host has not said it is alive within
	// AliveFor, or did not answer.
	ErrHostDown = errors.New("host not running")
	// ErrNoHost: no host is alive to place a group on, or the one named
	// is unknown.
	ErrNoHost = errors.New("no such host alive")
)

const (
	// Beat is how often a host says it is alive.
	Beat = 2 * time.Second
	// AliveFor is how long a host counts as alive after it last said so.
	AliveFor = 3 * Beat
	// CallTimeout bounds one call to a host (a create returns at once; a
	// destroy stops the group's processes, within their grace period).
	CallTimeout = 30 * time.Second
)

// Subject is the subject of op on host.
func Subject(host, op string) string { return "redblack.provisioner.host." + host + "." + op }

// Alive is a host's liveness entry.
type Alive struct {
	Host string    `json:"host"`
	At   time.Time `json:"at"`
}

// Owner is a group's owner entry.
type Owner struct {
	Host    string `json:"host"`
	Service string `json:"service"`
}

// request and response are the wire form of a call.
type request struct {
	Spec     fleet.GroupSpec `json:"spec,omitempty"`
	Group    string          `json:"group,omitempty"`
	Service  string          `json:"service,omitempty"`
	Capacity int             `json:"capacity,omitempty"`
	Instance string          `json:"instance,omitempty"`
	Slots    []int           `json:"slots,omitempty"`
}

type response struct {
	Group     *fleet.Group     `json:"group,omitempty"`
	Groups    []fleet.Group    `json:"groups,omitempty"`
	Instances []fleet.Instance `json:"instances,omitempty"`
	// CPU is the answer to "cpu": each instance's CPU time, by id.
	CPU   map[string]time.Duration `json:"cpu,omitempty"`
	Error string                   `json:"error,omitempty"`
	Kind  string                   `json:"kind,omitempty"` // which fleet error, if one
}

// kinds are the fleet errors that cross the wire as themselves.
var kinds = map[string]error{
	"group_not_found": fleet.ErrGroupNotFound, "instance_not_found": fleet.ErrInstanceNotFound,
	"bad_artifact": fleet.ErrBadArtifact, "capacity": fleet.ErrCapacity,
}

func fail(err error) response {
	r := response{Error: err.Error()}
	for k, e := range kinds {
		if errors.Is(err, e) {
			r.Kind = k
		}
	}
	return r
}

// Serve answers the calls for host with p and keeps host's liveness entry
// fresh in kv, until ctx ends.
func Serve(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, host string, p fleet.Provider, log zerolog.Logger) error {
	sub, err := nc.Subscribe(Subject(host, "*"), func(m *nats.Msg) {
		// each call on its own: a destroy waits out its instances' grace
		// period, and must not hold the host's other calls meanwhile
		go natsx.Guard(log, "host call", func() {
			op := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
			var req request
			var resp response
			if err := json.Unmarshal(m.Data, &req); err != nil {
				resp = response{Error: "bad request: " + err.Error()}
			} else {
				resp = serve(ctx, p, op, req)
			}
			b, _ := json.Marshal(resp)
			if err := m.Respond(b); err != nil {
				log.Warn().Err(err).Str("op", op).Msg("answer a host call")
			}
		})
	})
	if err != nil {
		return fmt.Errorf("hosts: serve %s: %w", host, err)
	}
	defer sub.Unsubscribe()
	t := time.NewTicker(Beat)
	defer t.Stop()
	for {
		b, _ := json.Marshal(Alive{Host: host, At: time.Now().UTC()})
		if err := (release.Store{KV: kv}).PutHost(ctx, host, b); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("say this host is alive")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func serve(ctx context.Context, p fleet.Provider, op string, req request) response {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	var err error
	var resp response
	switch op {
	case "create":
		var g fleet.Group
		if g, err = p.CreateGroup(ctx, req.Spec); err == nil {
			resp.Group = &g
		}
	case "describe":
		var g fleet.Group
		if g, err = p.DescribeGroup(ctx, req.Group); err == nil {
			resp.Group = &g
		}
	case "list":
		resp.Groups, err = p.ListGroups(ctx, req.Service)
	case "instances":
		resp.Instances, err = p.Instances(ctx, req.Group)
	case "resize":
		err = p.Resize(ctx, req.Group, req.Capacity)
	case "destroy":
		err = p.DestroyGroup(ctx, req.Group)
	case "terminate":
		err = p.TerminateInstance(ctx, req.Group, req.Instance)
	case "cpu":
		resp.CPU, err = cpuOf(ctx, p, req.Group)
	case "slots":
		err = setSlots(ctx, p, req.Group, req.Slots)
	default:
		err = fmt.Errorf("unknown operation %q", op)
	}
	if err != nil {
		return fail(err)
	}
	return resp
}

// Provider is a fleet.Provider over every host: each call goes to the
// host that owns the group (this host's own provider directly).
type Provider struct {
	NC *nats.Conn
	// KV is the releases bucket: hosts' liveness and groups' owners.
	KV jetstream.KeyValue
	// Self is this host, whose provider is Local.
	Self  string
	Local fleet.Provider
}

// Alive lists the hosts alive now, by name.
func (h *Provider) Alive(ctx context.Context) ([]string, error) {
	entries, err := natsx.Entries(ctx, h.KV, release.HostKey("*"))
	if err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	out := []string{h.Self} // alive, as it asks
	for _, e := range entries {
		var a Alive
		if json.Unmarshal(e.Value(), &a) == nil && ValidateName(a.Host) == nil && e.Key() == release.HostKey(a.Host) && a.Host != h.Self && time.Since(a.At) < AliveFor {
			out = append(out, a.Host)
		}
	}
	sort.Strings(out)
	return out, nil
}

// alive reports whether host is alive, and since when it was last seen.
func (h *Provider) alive(ctx context.Context, host string) (bool, time.Time, error) {
	e, err := h.KV.Get(ctx, release.HostKey(host))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, fmt.Errorf("hosts: %w", err)
	}
	var a Alive
	if json.Unmarshal(e.Value(), &a) != nil {
		return false, time.Time{}, nil
	}
	return time.Since(a.At) < AliveFor, a.At, nil
}

// Place picks the host for group among alive: rendezvous hashing, so a
// name goes to the same host while that host lives, and the groups spread.
func Place(group string, alive []string) string {
	var best string
	var top uint64
	for _, host := range alive {
		sum := sha256.Sum256([]byte(host + "/" + group)) // FNV's high bits barely move with the host
		if w := binary.BigEndian.Uint64(sum[:8]); best == "" || w > top {
			best, top = host, w
		}
	}
	return best
}

// OwnerOf is the host that owns group ("" if no host does).
func (h *Provider) OwnerOf(ctx context.Context, group string) (string, error) {
	e, err := h.KV.Get(ctx, release.OwnerKey(group))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("hosts: owner of %s: %w", group, err)
	}
	var o Owner
	if err := json.Unmarshal(e.Value(), &o); err != nil {
		return "", fmt.Errorf("hosts: owner of %s: %w", group, err)
	}
	if err := ValidateName(o.Host); err != nil { // a subject token: never a wildcard
		return "", fmt.Errorf("hosts: owner of %s: %w", group, err)
	}
	return o.Host, nil
}

// CreateGroup places the group (on s.Host if it names one), records its
// owner, and creates it there. A group that has an owner already is
// created (idempotently) where it is.
func (h *Provider) CreateGroup(ctx context.Context, s fleet.GroupSpec) (fleet.Group, error) {
	host, err := h.OwnerOf(ctx, s.Group)
	if err != nil {
		return fleet.Group{}, err
	}
	if _, err := h.Local.DescribeGroup(ctx, s.Group); host == "" && err == nil {
		host = h.Self // made here before owners were recorded
	}
	if host == "" {
		alive, err := h.Alive(ctx)
		if err != nil {
			return fleet.Group{}, err
		}
		switch {
		case s.Host != "" && !slices.Contains(alive, s.Host):
			return fleet.Group{}, fmt.Errorf("%w: %s (alive: %s)", ErrNoHost, s.Host, strings.Join(alive, ", "))
		case s.Host != "":
			host = s.Host
		case len(alive) == 0:
			return fleet.Group{}, fmt.Errorf("%w: none has said so in %s", ErrNoHost, AliveFor)
		default:
			host = Place(s.Group, alive)
		}
		b, _ := json.Marshal(Owner{Host: host, Service: s.Service})
		if err := (release.Store{KV: h.KV}).CreateOwner(ctx, s.Group, b); errors.Is(err, jetstream.ErrKeyExists) {
			if host, err = h.OwnerOf(ctx, s.Group); err != nil {
				return fleet.Group{}, err
			}
		} else if err != nil {
			return fleet.Group{}, fmt.Errorf("hosts: own %s: %w", s.Group, err)
		}
	}
	s.Host = host
	var resp response
	if err := h.call(ctx, host, "create", request{Spec: s}, &resp, func(p fleet.Provider) error {
		g, err := p.CreateGroup(ctx, s)
		resp.Group = &g
		return err
	}); err != nil {
		return fleet.Group{}, err
	}
	return *resp.Group, nil
}

// DescribeGroup asks the group's host.
func (h *Provider) DescribeGroup(ctx context.Context, name string) (fleet.Group, error) {
	host, err := h.owned(ctx, name)
	if err != nil {
		return fleet.Group{}, err
	}
	var resp response
	if err := h.call(ctx, host, "describe", request{Group: name}, &resp, func(p fleet.Provider) error {
		g, err := p.DescribeGroup(ctx, name)
		resp.Group = &g
		return err
	}); err != nil {
		return fleet.Group{}, err
	}
	return *resp.Group, nil
}

// ListGroups asks every host alive, and fails if a host that owns a
// group of service is not among them: a listing is whole or an error.
func (h *Provider) ListGroups(ctx context.Context, service string) ([]fleet.Group, error) {
	alive, err := h.Alive(ctx)
	if err != nil {
		return nil, err
	}
	var out []fleet.Group
	for _, host := range alive {
		var resp response
		if err := h.call(ctx, host, "list", request{Service: service}, &resp, func(p fleet.Provider) error {
			var err error
			resp.Groups, err = p.ListGroups(ctx, service)
			return err
		}); err != nil {
			return nil, err
		}
		out = append(out, resp.Groups...)
	}
	owners, err := natsx.Entries(ctx, h.KV, release.OwnerKey("*"))
	if err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	listed := map[string]bool{}
	for _, g := range out {
		listed[g.Spec.Group] = true
	}
	for _, e := range owners {
		var o Owner
		group := strings.TrimPrefix(e.Key(), release.OwnerKey(""))
		if json.Unmarshal(e.Value(), &o) == nil && !listed[group] && !slices.Contains(alive, o.Host) &&
			(service == "" || o.Service == service) {
			return nil, fmt.Errorf("%w: %s, which owns %s", ErrHostDown, o.Host, group)
		}
	}
	return out, nil
}

// Instances asks the group's host.
func (h *Provider) Instances(ctx context.Context, name string) ([]fleet.Instance, error) {
	host, err := h.owned(ctx, name)
	if err != nil {
		return nil, err
	}
	var resp response
	if err := h.call(ctx, host, "instances", request{Group: name}, &resp, func(p fleet.Provider) error {
		var err error
		resp.Instances, err = p.Instances(ctx, name)
		return err
	}); err != nil {
		return nil, err
	}
	return resp.Instances, nil
}

// CPU implements fleet.CPUMeter: it asks the group's host, whose provider
// reads its instances' /proc.
func (h *Provider) CPU(ctx context.Context, name string) (map[string]time.Duration, error) {
	host, err := h.owned(ctx, name)
	if err != nil {
		return nil, err
	}
	var resp response
	if err := h.call(ctx, host, "cpu", request{Group: name}, &resp, func(p fleet.Provider) error {
		var err error
		resp.CPU, err = cpuOf(ctx, p, name)
		return err
	}); err != nil {
		return nil, err
	}
	return resp.CPU, nil
}

func cpuOf(ctx context.Context, p fleet.Provider, group string) (map[string]time.Duration, error) {
	m, ok := p.(fleet.CPUMeter)
	if !ok {
		return nil, fmt.Errorf("hosts: this host's provider does not measure CPU")
	}
	return m.CPU(ctx, group)
}

func setSlots(ctx context.Context, p fleet.Provider, group string, slots []int) error {
	s, ok := p.(fleet.Slotter)
	if !ok {
		return fmt.Errorf("hosts: this host's provider has no slots")
	}
	return s.SetSlots(ctx, group, slots)
}

// SetSlots implements fleet.Slotter: it asks the group's host.
func (h *Provider) SetSlots(ctx context.Context, name string, slots []int) error {
	host, err := h.owned(ctx, name)
	if err != nil {
		return err
	}
	return h.call(ctx, host, "slots", request{Group: name, Slots: slots}, nil, func(p fleet.Provider) error {
		return setSlots(ctx, p, name, slots)
	})
}

// Resize asks the group's host.
func (h *Provider) Resize(ctx context.Context, name string, capacity int) error {
	host, err := h.owned(ctx, name)
	if err != nil {
		return err
	}
	return h.call(ctx, host, "resize", request{Group: name, Capacity: capacity}, nil, func(p fleet.Provider) error {
		return p.Resize(ctx, name, capacity)
	})
}

// DestroyGroup asks the group's host, then forgets its owner. A group no
// host owns is destroyed already.
func (h *Provider) DestroyGroup(ctx context.Context, name string) error {
	host, err := h.owned(ctx, name)
	if errors.Is(err, fleet.ErrGroupNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := h.call(ctx, host, "destroy", request{Group: name}, nil, func(p fleet.Provider) error {
		return p.DestroyGroup(ctx, name)
	}); err != nil {
		return err
	}
	if err := (release.Store{KV: h.KV}).DeleteOwner(ctx, name); err != nil {
		return fmt.Errorf("hosts: forget the owner of %s: %w", name, err)
	}
	return nil
}

// TerminateInstance asks the group's host.
func (h *Provider) TerminateInstance(ctx context.Context, group, instance string) error {
	host, err := h.owned(ctx, group)
	if err != nil {
		return err
	}
	return h.call(ctx, host, "terminate", request{Group: group, Instance: instance}, nil, func(p fleet.Provider) error {
		return p.TerminateInstance(ctx, group, instance)
	})
}

// owned is the host of a group that has one: fleet.ErrGroupNotFound if
// none, ErrHostDown if it is not alive.
func (h *Provider) owned(ctx context.Context, group string) (string, error) {
	host, err := h.OwnerOf(ctx, group)
	if err != nil {
		return "", err
	}
	if host == "" {
		// a group of this host made before owners were recorded
		if _, err := h.Local.DescribeGroup(ctx, group); err == nil {
			return h.Self, nil
		}
		return "", fleet.ErrGroupNotFound
	}
	if host == h.Self {
		return host, nil
	}
	ok, seen, err := h.alive(ctx, host)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", downError(group, host, seen)
	}
	return host, nil
}

func downError(group, host string, seen time.Time) error {
	when := "never"
	if !seen.IsZero() {
		when = seen.Format(time.RFC3339)
	}
	return fmt.Errorf("%w: %s is on host %s, last alive %s", ErrHostDown, group, host, when)
}

// call runs op on host: this host's own provider directly, another's over
// NATS, its answer decoded into out (nil: none wanted).
func (h *Provider) call(ctx context.Context, host, op string, req request, out *response, local func(fleet.Provider) error) error {
	if host == h.Self {
		return local(h.Local)
	}
	b, _ := json.Marshal(req)
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	m, err := h.NC.RequestWithContext(cctx, Subject(host, op), b)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w: host %s does not answer (%s of %s)", ErrHostDown, host, op, groupOf(req))
	}
	if err != nil {
		return fmt.Errorf("hosts: %s on %s: %w", op, host, err)
	}
	var resp response
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return fmt.Errorf("hosts: %s on %s: %w", op, host, err)
	}
	if resp.Error != "" {
		if e, ok := kinds[resp.Kind]; ok {
			return fmt.Errorf("%w (host %s: %s)", e, host, resp.Error)
		}
		return fmt.Errorf("hosts: %s on %s: %s", op, host, resp.Error)
	}
	if out != nil {
		*out = resp
	}
	return nil
}

func groupOf(r request) string {
	if r.Spec.Group != "" {
		return r.Spec.Group
	}
	return r.Group
}

// ValidateName checks a host's name: letters, digits, '-' and '_', as it
// is a token of subjects and keys.
func ValidateName(name string) error {
	if name == "" || len(name) > 64 || strings.IndexFunc(name, func(r rune) bool {
		return !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0 {
		return fmt.Errorf("hosts: host name %q: want 1-64 letters, digits, '-' or '_'", name)
	}
	return nil
}

// DefaultHost is this machine's hostname up to its first dot, as a
// host's name ("local" if that is not a valid name).
func DefaultHost() string {
	h, _ := os.Hostname()
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	if ValidateName(h) != nil {
		return "local"
	}
	return h
}
