package api

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/testkit"
)

// A release call whose answer is lost is asked again with the same key,
// which names the same release; another caller's key never does.
func TestCallAsksAgainWithTheSameKey(t *testing.T) {
	srv := testkit.Start(t)
	nc := srv.Conn(t)
	id := auth.Identity{Team: "team-hello", User: "ann"}
	var mu sync.Mutex
	var keys []string
	// the first request is lost (as with a reconnecting service); the
	// second is answered
	sub, err := nc.Subscribe(subjects.API(id.Team, id.User, VerbRelease, "hello"), func(m *nats.Msg) {
		var r ReleaseRequest
		if err := DecodeBody(m.Data, &r); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		keys = append(keys, r.Key)
		n := len(keys)
		mu.Unlock()
		if n == 1 {
			return
		}
		rid, err := releaseID(id, "hello", r.Key)
		if err != nil {
			t.Error(err)
		}
		b, _ := json.Marshal(Answer{Release: rid, Version: r.Version})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	start := time.Now()
	var ans Answer
	if err := Call(nc, id, VerbRelease, "hello", ReleaseRequest{Version: "v2"}, &ans); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("requests carried keys %q: want two, the same", keys)
	}
	if d := time.Since(start); d < callAttempt || d > 2*callAttempt {
		t.Errorf("answered after %s: want one attempt's wait (%s) and the second's answer", d, callAttempt)
	}
	want, _ := releaseID(id, "hello", keys[0])
	if ans.Release != want || ans.Version != "v2" {
		t.Fatalf("answer %+v", ans)
	}
}

func TestReleaseIDFromKey(t *testing.T) {
	ann := auth.Identity{Team: "team-hello", User: "ann"}
	bob := auth.Identity{Team: "team-hello", User: "bob"}
	a1, err := releaseID(ann, "hello", "k-12345678")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := releaseID(ann, "hello", "k-12345678")
	b, _ := releaseID(bob, "hello", "k-12345678")
	other, _ := releaseID(ann, "world", "k-12345678")
	if a1 != a2 {
		t.Fatal("one key, two ids")
	}
	if a1 == b || a1 == other {
		t.Fatal("another caller's or service's key named the same release")
	}
	for _, bad := range []string{"short", "has space 12345", "x.y.z.12345678", string(make([]byte, 65))} {
		if _, err := releaseID(ann, "hello", bad); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
	if id, err := releaseID(ann, "hello", ""); err != nil || id == "" || id == a1 {
		t.Fatalf("no key: %q %v", id, err)
	}
}
