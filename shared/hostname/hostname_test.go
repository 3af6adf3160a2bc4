package hostname_test

import (
	"errors"
	"testing"

	"github.com/redblack/redblack/shared/hostname"
)

// TestLookAlikesAreOneName: every spelling of a name that a client can put
// in a Host header, or a team in a spec, comes out as the same name.
func TestLookAlikesAreOneName(t *testing.T) {
	for in, want := range map[string]string{
		"other":                 "other",
		"other.":                "other",
		"OTHER":                 "other",
		"Other.Localhost.":      "other.localhost",
		"other:8080":            "other",
		"other.:8080":           "other",
		"other.localhost.:80":   "other.localhost",
		"[::1]:80":              "",
		"ｏｔｈｅｒ":                 "other", // full-width letters
		"ＯＴＨＥＲ.":                "other",
		"bücher.example":        "xn--bcher-kva.example",
		"BÜCHER.example.":       "xn--bcher-kva.example",
		"xn--bcher-kva.example": "xn--bcher-kva.example",
		"api.example.com":       "api.example.com",
	} {
		got, err := hostname.Normalize(in)
		if want == "" {
			if err == nil {
				t.Errorf("%q: %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestNotHostNames are refused.
func TestNotHostNames(t *testing.T) {
	for _, in := range []string{"", ".", "..", "other..", ".other", "a..b", "a b", "a/b", "a_b", "-a"} {
		if got, err := hostname.Normalize(in); !errors.Is(err, hostname.ErrInvalid) {
			t.Errorf("%q: %q, %v; want ErrInvalid", in, got, err)
		}
	}
}
