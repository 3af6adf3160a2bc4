package discovery

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/natsx"
)

// Up lists the ids of a group's instances that are up in the instances
// bucket — the count the traffic guard, the canary and Chaos Monkey go by.
// An error means the bucket could not be read whole (a node lost, an
// election, ctx ended): the count is unknown, and callers wait or refuse
// rather than act on "none up".
func Up(ctx context.Context, kv jetstream.KeyValue, service, group string) ([]string, error) {
	up, err := upEntries(ctx, kv, service, group)
	out := make([]string, 0, len(up))
	for _, d := range up {
		out = append(out, d.ID)
	}
	return out, err
}

// UpBySlot is a stateful group's up instances in discovery, by slot
// name: the instance id that runs each.
func UpBySlot(ctx context.Context, kv jetstream.KeyValue, service, group string) (map[string]string, error) {
	up, err := upEntries(ctx, kv, service, group)
	out := map[string]string{}
	for _, d := range up {
		if d.Slot != "" {
			out[d.Slot] = d.ID
		}
	}
	return out, err
}

// upEntries reads a group's entries (each validated by Decode) and keeps
// those up.
func upEntries(ctx context.Context, kv jetstream.KeyValue, service, group string) ([]Entry, error) {
	entries, err := natsx.Entries(ctx, kv, Key(service, group, "*"))
	if err != nil {
		return nil, fmt.Errorf("discovery unavailable: %w", err)
	}
	var out []Entry
	for _, e := range entries {
		if d, err := Decode(e.Value()); err == nil && d.State == StateUp {
			out = append(out, d)
		}
	}
	return out, nil
}
