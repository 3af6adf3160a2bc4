package subjects

import (
	"errors"
	"testing"
)

func TestValidateService(t *testing.T) {
	good := []string{"a", "hello", "hello-world", "a0123456789012345678901234567890"[:31]}
	for _, n := range good {
		if err := ValidateService(n); err != nil {
			t.Errorf("ValidateService(%q) = %v, want nil", n, err)
		}
	}
	bad := []string{"", "Hello", "1abc", "-a", "a_b", "a.b", "a*", "a>", "a b", "a0123456789012345678901234567890x", Invalid}
	for _, n := range bad {
		if err := ValidateService(n); !errors.Is(err, ErrInvalidService) {
			t.Errorf("ValidateService(%q) = %v, want ErrInvalidService", n, err)
		}
	}
}

func TestBuildersAndParse(t *testing.T) {
	cases := map[string]Parsed{
		Release("hello", "canary.passed"):                    {"release", "hello", "canary.passed"},
		Fleet("hello", "servergroup.create"):                 {"fleet", "hello", "servergroup.create"},
		Chaos("hello", "terminated"):                         {"chaos", "hello", "terminated"},
		Sample("hello", "hello-v007", PublisherRouter, "r1"): {"metrics", "hello", "hello-v007.router.r1"},
	}
	for subj, want := range cases {
		got, err := Parse(subj)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", subj, got, err, want)
		}
	}
	if got := GroupSamples("hello", ">"); got != "metrics.hello.>" {
		t.Errorf("every group's samples: %s", got)
	}
	svc, group, pub, id, ok := ParseSample(Sample("hello", "hello-v007", CallerPublisher("api"), "c1/x"))
	if !ok || svc != "hello" || group != "hello-v007" || pub != "caller-api" || id != "c1/x" {
		t.Errorf("ParseSample: %q %q %q %q %v", svc, group, pub, id, ok)
	}
	for _, bad := range []string{"metrics.hello.g", "metrics.hello.g.router", "metrics.hello.g.router.*", "metrics.hello.g.router.a.b", "release.hello.g.router.a", "metrics..g.router.a"} {
		if _, _, _, _, ok := ParseSample(bad); ok {
			t.Errorf("ParseSample(%q) succeeded", bad)
		}
	}
	for _, bad := range []string{"", "release", "release.hello", "release..x", ".a.b"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", bad)
		}
	}
	if AllReleases("") != "release.>" || AllReleases("hello") != "release.hello.>" {
		t.Errorf("AllReleases filters wrong: %q %q", AllReleases(""), AllReleases("hello"))
	}
}
