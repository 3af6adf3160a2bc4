package kv_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/kv"
	"github.com/redblack/redblack/shared/testkit"
)

type counter struct {
	N int `json:"n"`
}

func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	s := testkit.Start(t)
	ctx := testkit.Context(t, 10*time.Second)
	js, _ := jetstream.New(s.Conn(t))
	b, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUpdateRacers: eight writers each adding one, five times, to one key
// that does not exist yet: every increment lands, none is lost to a race.
func TestUpdateRacers(t *testing.T) {
	b := bucket(t)
	ctx := testkit.Context(t, 30*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				_, _, err := kv.Update(ctx, b, "k", func(c *counter, _ bool) error { c.N++; return nil })
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	var conflicts int
	for err := range errs {
		if errors.Is(err, kv.ErrConflict) {
			conflicts++ // said so: nothing written, the caller knows
		} else if err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := kv.Update(ctx, b, "k", func(c *counter, exists bool) error {
		if !exists {
			t.Fatal("no entry")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.N+conflicts != 40 {
		t.Fatalf("counter %d after 40 increments, %d of them refused as conflicts", got.N, conflicts)
	}
}

func TestUpdateRefusalAndNoChange(t *testing.T) {
	b := bucket(t)
	ctx := testkit.Context(t, 10*time.Second)
	_, rev, err := kv.Update(ctx, b, "k", func(c *counter, exists bool) error { c.N = 1; return nil })
	if err != nil || rev == 0 {
		t.Fatal(err)
	}
	boom := errors.New("no")
	if _, _, err := kv.Update(ctx, b, "k", func(c *counter, _ bool) error { c.N = 9; return boom }); !errors.Is(err, boom) {
		t.Fatalf("refusal: %v", err)
	}
	_, same, err := kv.Update(ctx, b, "k", func(c *counter, _ bool) error { return nil })
	if err != nil || same != rev {
		t.Fatalf("an unchanged value was written again: revision %d → %d (%v)", rev, same, err)
	}
	if e, _ := b.Get(ctx, "k"); string(e.Value()) != `{"n":1}` {
		t.Fatalf("stored %s", e.Value())
	}
	if _, err := b.Put(ctx, "bad", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kv.Update(ctx, b, "bad", func(c *counter, _ bool) error { return nil }); !errors.Is(err, kv.ErrCorrupt) {
		t.Fatalf("corrupt: %v", err)
	}
}
