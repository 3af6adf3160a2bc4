package routes

import (
	"encoding/json"
	"testing"
)

// FuzzDecode: a route read from the routes bucket is bounded and valid, or
// refused.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"weights":{"hello-v001":1000,"hello-v002":0},"active":"hello-v001","previous":"hello-v000"}`))
	f.Add([]byte(`{"weights":{"a":-1}}`))
	f.Add([]byte(`{"weights":{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1,"o":1,"p":1,"q":1}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := Decode(in)
		if err != nil {
			return
		}
		if len(r.Weights) > MaxGroups {
			t.Fatalf("accepted %d groups", len(r.Weights))
		}
		for g, w := range r.Weights {
			if w < 0 || w > MaxWeight {
				t.Fatalf("accepted weight %d of %s", w, g)
			}
		}
		b, _ := json.Marshal(r)
		if _, err := Decode(b); err != nil {
			t.Fatalf("re-decode of %q: %v", b, err)
		}
		_ = r.RestoreTarget()
		_ = r.Groups()
	})
}
