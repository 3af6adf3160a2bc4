package discovery

import (
	"net"
	"testing"
)

// FuzzDecode: an instance entry read from the instances bucket names an
// address the router can dial and a known state, or is refused.
func FuzzDecode(f *testing.F) {
	f.Add(Entry{ID: "hello-v001-1", Service: "hello", Group: "hello-v001", Address: "127.0.0.1:8080", State: StateUp}.Encode())
	f.Add([]byte(`{"id":"x","service":"hello","group":"g","address":"127.0.0.1:0","state":"up"}`))
	f.Add([]byte(`{"id":"x","service":"hello","group":"g","address":"[::1]:70000","state":"gone"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := Decode(in)
		if err != nil {
			return
		}
		if _, _, err := net.SplitHostPort(e.Address); err != nil {
			t.Fatalf("accepted address %q", e.Address)
		}
		if _, err := Decode(e.Encode()); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
