package release

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// The releases bucket also holds the provisioner's entries beside the
// releases' own: a group it waits on (pending.<group>), a host's liveness
// (host.<host>) and the host that owns a group (owner.<group>). Their
// values are the provisioner's to encode; their keys and every write to
// them are here, so that Store is the bucket's one writer (leases, the
// other entries, are written by Lease in this package).

// PendingKey is a pending group's key in the releases bucket.
func PendingKey(group string) string { return "pending." + group }

// HostKey is a host's liveness entry in the releases bucket.
func HostKey(host string) string { return "host." + host }

// OwnerKey is a group's owner entry in the releases bucket.
func OwnerKey(group string) string { return "owner." + group }

// PutPending stores a pending group's entry and returns its revision.
func (s Store) PutPending(ctx context.Context, group string, value []byte) (uint64, error) {
	rev, err := s.KV.Put(ctx, PendingKey(group), value)
	if err != nil {
		return 0, fmt.Errorf("release: pending %s: %w", group, err)
	}
	return rev, nil
}

// DeletePending deletes a pending group's entry if its revision is still
// rev (0: whichever); a newer entry is jetstream.ErrKeyRevisionMismatch.
func (s Store) DeletePending(ctx context.Context, group string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	return s.KV.Delete(ctx, PendingKey(group), opts...)
}

// PutHost stores a host's liveness entry.
func (s Store) PutHost(ctx context.Context, host string, value []byte) error {
	_, err := s.KV.Put(ctx, HostKey(host), value)
	return err
}

// CreateOwner records the host that owns group, unless one is recorded
// already (then jetstream.ErrKeyExists).
func (s Store) CreateOwner(ctx context.Context, group string, value []byte) error {
	_, err := s.KV.Create(ctx, OwnerKey(group), value)
	return err
}

// DeleteOwner forgets the host that owned group.
func (s Store) DeleteOwner(ctx context.Context, group string) error {
	return s.KV.Delete(ctx, OwnerKey(group))
}
