package spec

import (
	"testing"
)

// FuzzDecode: a spec read back from the services bucket is decoded and
// validated where it is read; whatever the bucket holds, Decode does not
// panic, and what it accepts is valid and survives a round trip.
func FuzzDecode(f *testing.F) {
	s := Service{Name: "hello", Owner: "t", Capacity: 2, Hostnames: []string{"hello.example.com"}, Artifact: Artifact{Command: []string{"/opt/hello", "--version", "{version}"}, Paths: []string{"/opt/releases"}}}
	s.Default()
	b, _ := s.Encode()
	f.Add(b)
	f.Add([]byte(`{"name":"x","owner":"t","capacity":1,"artifact":{"command":["/bin/sh"],"env_secrets":{"A":".."}}}`))
	f.Add([]byte(`{"name":"x","capacity":-1,"strategy":{"canary":{"weight":1000000}}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := Decode(in)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("Decode accepted an invalid spec %q: %v", in, err)
		}
		out, err := got.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", out, err)
		}
		if b2, _ := again.Encode(); string(b2) != string(out) {
			t.Fatalf("round trip changed %q -> %q", out, b2)
		}
	})
}
