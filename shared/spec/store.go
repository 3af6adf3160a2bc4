package spec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"
)

// Applied says what Apply did.
type Applied string

// Results of Apply.
const (
	Created   Applied = "created"
	Updated   Applied = "updated"
	Unchanged Applied = "unchanged"
)

// ErrNotFound is returned by Get for a service with no spec.
var ErrNotFound = errors.New("no such service")

// Apply stores s in the services bucket with compare-and-set: Create when
// the key is new, Update with the revision read otherwise, so two writers
// cannot silently overwrite each other. It validates s first.
func Apply(ctx context.Context, kv jetstream.KeyValue, s Service) (Applied, error) {
	s.Default()
	if err := s.Validate(); err != nil {
		return "", err
	}
	b, err := s.Encode()
	if err != nil {
		return "", err
	}
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := kv.Get(ctx, s.Name)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err := kv.Create(ctx, s.Name, b); err == nil {
				return Created, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return "", fmt.Errorf("spec: create %s: %w", s.Name, err)
			}
			continue // someone created it first: read again
		case err != nil:
			return "", fmt.Errorf("spec: get %s: %w", s.Name, err)
		}
		if bytes.Equal(cur.Value(), b) {
			return Unchanged, nil
		}
		if _, err := kv.Update(ctx, s.Name, b, cur.Revision()); err == nil {
			return Updated, nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return "", fmt.Errorf("spec: update %s: %w", s.Name, err)
		}
	}
	return "", fmt.Errorf("spec: %s changed under us 5 times; try again", s.Name)
}

// Get reads one service's spec.
func Get(ctx context.Context, kv jetstream.KeyValue, name string) (Service, error) {
	e, err := kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Service{}, fmt.Errorf("spec: %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Service{}, fmt.Errorf("spec: get %s: %w", name, err)
	}
	return Decode(e.Value())
}

// List reads every spec, sorted by name.
func List(ctx context.Context, kv jetstream.KeyValue) ([]Service, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("spec: list: %w", err)
	}
	var out []Service
	for k := range lister.Keys() {
		s, err := Get(ctx, kv, k)
		if errors.Is(err, ErrNotFound) {
			continue // deleted between list and get
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
