// Package discovery is the shape of the instances bucket, the mesh's Eureka:
// one entry per running instance under <service>.<group>.<instance>, written
// by the provisioner and refreshed by its heartbeat, so the instances of a
// provisioner that died expire with the bucket's TTL.
package discovery

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// States of an instance.
const (
	StateStarting   = "starting"
	StateUp         = "up"
	StateDown       = "down"
	StateTerminated = "terminated"
)

// Entry is one instance as the router and the CLI see it.
type Entry struct {
	ID         string    `json:"id"`
	Service    string    `json:"service"`
	Group      string    `json:"group"`
	Version    string    `json:"version"`
	Address    string    `json:"address"`
	State      string    `json:"state"`
	Started    time.Time `json:"started"`
	LastHealth time.Time `json:"last_health,omitempty"`
	// Slot is a stateful service's stable slot that the instance runs
	// ("store-0"), and SlotCount the service's number of slots: callers
	// hash each key over them and send it to its slot (lb.Client.DoKey).
	Slot      string `json:"slot,omitempty"`
	SlotCount int    `json:"slot_count,omitempty"`
}

// Key is the bucket key of an instance.
func Key(service, group, instance string) string { return service + "." + group + "." + instance }

// ServiceFilter selects every instance of a service ("" for all).
func ServiceFilter(service string) string {
	if service == "" {
		return ">"
	}
	return service + ".>"
}

// Encode returns the stored JSON.
func (e Entry) Encode() []byte {
	b, _ := json.Marshal(e)
	return b
}

// Decode reads a stored entry and validates it: it is read from the
// bucket, outside data like any other.
func Decode(b []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("discovery: %w", err)
	}
	return e, e.Validate()
}

// Validate checks that the entry names a service, a group and an
// instance, an address host:port the router can dial, and a known state.
func (e Entry) Validate() error {
	if e.ID == "" || e.Service == "" || e.Group == "" || strings.ContainsAny(e.ID+e.Service+e.Group, ". *>") {
		return fmt.Errorf("discovery: entry %q of %q/%q: want an id, a service and a group", e.ID, e.Service, e.Group)
	}
	host, port, err := net.SplitHostPort(e.Address)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return fmt.Errorf("discovery: entry %s: address %q is not host:port", e.ID, e.Address)
	}
	if e.Slot != "" {
		n, ok := strings.CutPrefix(e.Slot, e.Service+"-")
		if i, err := strconv.Atoi(n); !ok || err != nil || i < 0 || strconv.Itoa(i) != n || i >= e.SlotCount {
			return fmt.Errorf("discovery: entry %s: slot %q is not %s-<n> with n below its slot count %d", e.ID, e.Slot, e.Service, e.SlotCount)
		}
	}
	switch e.State {
	case StateStarting, StateUp, StateDown, StateTerminated:
		return nil
	}
	return fmt.Errorf("discovery: entry %s: state %q", e.ID, e.State)
}

// ParseKey splits a key into service, group and instance.
func ParseKey(key string) (service, group, instance string, err error) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("discovery: key %q is not <service>.<group>.<instance>", key)
	}
	return parts[0], parts[1], parts[2], nil
}

// Addr is the instance's host:port.
func (e Entry) Addr() string { return e.Address }
