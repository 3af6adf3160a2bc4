package discovery

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Up lists the ids of a group's instances that are up in the instances
// bucket — the count the traffic guard, the canary and Chaos Monkey go by.
func Up(ctx context.Context, kv jetstream.KeyValue, service, group string) ([]string, error) {
	lister, err := kv.ListKeysFiltered(ctx, Key(service, group, "*"))
	if err != nil {
		return nil, err
	}
	var out []string
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue // expired or deleted meanwhile
		}
		if d, err := Decode(e.Value()); err == nil && d.State == StateUp {
			out = append(out, d.ID)
		}
	}
	return out, nil
}
