package spec

import (
	"strings"
	"testing"

	"github.com/redblack/redblack/shared/events"
)

func localSpec() Service {
	s := Service{Name: "hello", Owner: "t", Capacity: 1, Artifact: Artifact{
		Command: []string{"/opt/hello/bin/hello", "--version", "{version}"},
		Env:     map[string]string{"MODE": "prod"}, EnvSecrets: map[string]string{"DB_PASSWORD": "db"},
		Paths: []string{"/opt/hello/releases"},
	}}
	s.Default()
	return s
}

// TestResolveFillsTheTemplate: a request that sets nothing gets the spec's
// command with its version; one that names a program gets it only if the
// spec allows it, and never its own environment.
func TestResolveFillsTheTemplate(t *testing.T) {
	s := localSpec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := s.Resolve(events.Artifact{}, "v7")
	if err != nil || strings.Join(a.Command, " ") != "/opt/hello/bin/hello --version v7" || a.Env["MODE"] != "prod" || a.EnvSecrets["DB_PASSWORD"] != "db" {
		t.Fatalf("default artifact: %+v, %v", a, err)
	}
	for _, ok := range [][]string{
		{"/opt/hello/bin/hello", "--version", "v8", "--error-rate", "0.3"},
		{"/opt/hello/releases/v8/hello"},
	} {
		if a, err := s.Resolve(events.Artifact{Command: ok}, "v8"); err != nil || a.Command[0] != ok[0] || a.Env["MODE"] != "prod" {
			t.Errorf("request %v: %+v, %v", ok, a, err)
		}
	}
	for _, c := range []struct {
		req  events.Artifact
		want string
	}{
		{events.Artifact{Command: []string{"/bin/sh", "-c", "echo pwned > /tmp/x"}}, "not a program this service may run"},
		{events.Artifact{Command: []string{"/opt/hello/releases/../../../bin/sh"}}, "not a program"},
		{events.Artifact{Command: []string{"/opt/hello/releases"}}, "not a program"},
		{events.Artifact{Command: []string{"/opt/hello/releases-evil/sh"}}, "not a program"},
		{events.Artifact{Command: []string{"hello"}}, "not a program"},
		{events.Artifact{Command: []string{"/opt/hello/bin/hello"}, Env: map[string]string{"LD_PRELOAD": "/tmp/x.so"}}, "may not set the environment"},
		{events.Artifact{EnvSecrets: map[string]string{"X": "../../root"}}, "may not set the environment"},
		{events.Artifact{AMI: "ami-123"}, "aws provider"},
	} {
		if _, err := s.Resolve(c.req, "v9"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("request %+v: %v, want %q", c.req, err, c.want)
		}
	}
	// the provisioner's check: an artifact with another env is refused
	a, _ = s.Resolve(events.Artifact{}, "v7")
	a.Env = map[string]string{"MODE": "debug"}
	if err := s.Allows(a); err == nil {
		t.Error("Allows accepted an env that is not the spec's")
	}
}

func TestResolveAWS(t *testing.T) {
	s := Service{Name: "edge", Owner: "t", Provider: ProviderAWS, Capacity: 1, Artifact: Artifact{AMI: "ami-base"}}
	s.Default()
	if _, err := s.Resolve(events.Artifact{AMI: "ami-base"}, "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(events.Artifact{AMI: "ami-other"}, "v1"); err == nil || !strings.Contains(err.Error(), "ami_owners") {
		t.Fatalf("another AMI without an owner policy: %v", err)
	}
	if _, err := s.Resolve(events.Artifact{AMI: "ami-base", UserData: "#!/bin/sh\ncurl evil"}, "v1"); err == nil {
		t.Fatal("a request's user data was accepted")
	}
	s.Artifact.AMIOwners = []string{"123456789012"}
	if _, err := s.Resolve(events.Artifact{AMI: "ami-other"}, "v1"); err != nil {
		t.Fatalf("another AMI with an owner policy (checked by the provider): %v", err)
	}
}

func TestArtifactPolicyValidated(t *testing.T) {
	s := localSpec()
	s.Artifact.Paths = []string{"relative/dir", "/"}
	s.Artifact.EnvSecrets = map[string]string{"X": "../etc/shadow"}
	err := s.Validate()
	for _, f := range []string{"artifact.paths[0]", "artifact.paths[1]", "artifact.env_secrets"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("want %s invalid: %v", f, err)
		}
	}
}
