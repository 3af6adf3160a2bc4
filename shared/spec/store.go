package spec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/hostname"
	"github.com/redblack/redblack/shared/natsx"
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
	if err := unclaimed(ctx, kv, s); err != nil {
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

// ErrClaimed is returned by Apply for a host name or port another service
// has.
var ErrClaimed = errors.New("claimed by another service")

// unclaimed checks that no other service has one of s's host names (its
// name, name.localhost, or a spec hostname) or its port.
func unclaimed(ctx context.Context, kv jetstream.KeyValue, s Service) error {
	keys, err := natsx.Keys(ctx, kv)
	if err != nil {
		return fmt.Errorf("spec: list: %w", err)
	}
	var all []Service
	for _, k := range keys {
		// a stored spec that no longer validates claims nothing: the
		// router does not read it either
		if other, err := Get(ctx, kv, k); err == nil {
			all = append(all, other)
		}
	}
	hosts := func(x Service) []string {
		hs := []string{x.Name, x.Name + ".localhost"}
		for _, h := range x.Hostnames {
			if n, err := hostname.Normalize(h); err == nil { // as the router routes it
				hs = append(hs, n)
			}
		}
		return hs
	}
	mine := hosts(s)
	for _, other := range all {
		if other.Name == s.Name {
			continue
		}
		for _, h := range hosts(other) {
			if slices.Contains(mine, h) {
				return fmt.Errorf("spec: hostname %q: %w %s", h, ErrClaimed, other.Name)
			}
		}
		if s.Port != 0 && other.Port == s.Port {
			return fmt.Errorf("spec: port %d: %w %s", s.Port, ErrClaimed, other.Name)
		}
	}
	return nil
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
	keys, err := natsx.Keys(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("spec: list: %w", err)
	}
	var out []Service
	for _, k := range keys {
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
