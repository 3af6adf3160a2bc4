package discovery

import (
	"testing"
	"time"
)

func TestRoundTripAndKeys(t *testing.T) {
	e := Entry{ID: "hello-v001-1", Service: "hello", Group: "hello-v001", Version: "v1", Address: "127.0.0.1:4000", State: StateUp, Started: time.Unix(100, 0).UTC()}
	back, err := Decode(e.Encode())
	if err != nil || back != e {
		t.Fatalf("%+v %v", back, err)
	}
	s, g, i, err := ParseKey(Key("hello", "hello-v001", "hello-v001-1"))
	if err != nil || s != "hello" || g != "hello-v001" || i != "hello-v001-1" {
		t.Fatalf("%s %s %s %v", s, g, i, err)
	}
	if _, _, _, err := ParseKey("a.b"); err == nil {
		t.Fatal("bad key parsed")
	}
	if ServiceFilter("") != ">" || ServiceFilter("hello") != "hello.>" {
		t.Fatal("filters")
	}
}
