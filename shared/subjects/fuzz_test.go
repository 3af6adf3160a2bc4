package subjects

import "testing"

// FuzzParseAPI: an API subject yields a team, a user and a service that
// are valid names (so they can never be wildcards or span tokens), or is
// refused.
func FuzzParseAPI(f *testing.F) {
	f.Add(API("payments", "alice", "release", "hello"))
	f.Add("redblack.api.a.b.c")
	f.Add("redblack.api.*.>.release.hello")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseAPI(in)
		if err != nil {
			return
		}
		for _, tok := range []string{c.Team, c.User, c.Service} {
			if ValidateService(tok) != nil {
				t.Fatalf("accepted token %q of %q", tok, in)
			}
		}
		if API(c.Team, c.User, c.Verb, c.Service) != in {
			t.Fatalf("round trip of %q", in)
		}
	})
}
