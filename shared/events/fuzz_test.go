package events

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecode: Decode never panics, and whatever it accepts encodes and
// decodes again to the same envelope. Seed corpus: testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"a","source":"s","type":"io.redblack.release.requested","time":"2026-11-26T10:00:00Z","data":{"version":"v1"}}`))
	f.Add([]byte(`{"version":"v2"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := Decode(in)
		if err != nil {
			return
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", in, err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", out, err)
		}
		if again.ID != e.ID || again.Type != e.Type || !again.Time.Equal(e.Time) || !sameJSON(again.Data, e.Data) {
			t.Fatalf("round trip changed %q -> %q", in, out)
		}
		_, _ = e.TypedData()
	})
}

// sameJSON reports whether a and b hold the same JSON value (encoding may
// escape characters differently).
func sameJSON(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}
