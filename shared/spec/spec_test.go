package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/redblack/redblack/shared/events"
)

const hello = `
name: hello
owner: team-hello
capacity: 3
health:
  path: /healthz
  interval: 200ms
artifact:
  command: ["hello", "--version", "v1"]
`

func TestParseDefaultsAndRoundTrip(t *testing.T) {
	s, err := Parse(strings.NewReader(hello))
	if err != nil {
		t.Fatal(err)
	}
	if s.Provider != ProviderLocal || s.MaxCapacity != 10 || s.Health.HealthyThreshold != 2 || s.Health.Interval.D().Milliseconds() != 200 {
		t.Fatalf("defaults not applied: %+v", s)
	}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, back, s)
	}
}

func TestParseRejectsEachBadField(t *testing.T) {
	cases := map[string]struct{ yaml, field string }{
		"name":          {"name: Hello\nowner: x\n", "name"},
		"no capacity":   {"name: hello\nowner: x\n", "capacity"},
		"zero capacity": {"name: hello\nowner: x\ncapacity: 0\n", "capacity"},
		"owner":         {"name: hello\n", "owner"},
		"provider":      {"name: hello\nowner: x\nprovider: gcp\n", "provider"},
		"capacity":      {"name: hello\nowner: x\ncapacity: 501\n", "capacity"},
		"negative":      {"name: hello\nowner: x\ncapacity: -1\n", "capacity"},
		"max":           {"name: hello\nowner: x\ncapacity: 5\nmax_capacity: 2\n", "max_capacity"},
		"path":          {"name: hello\nowner: x\nhealth: {path: healthz}\n", "health.path"},
		"interval":      {"name: hello\nowner: x\nhealth: {interval: 1ms}\n", "health.interval"},
		"threshold":     {"name: hello\nowner: x\nhealth: {healthy_threshold: -2}\n", "health.healthy_threshold"},
		"artifact":      {"name: hello\nowner: x\nartifact: {ami: ami-1}\n", "artifact"},
		"aws no ami":    {"name: hello\nowner: x\nprovider: aws\nartifact: {command: [a]}\n", "artifact"},
		"host":          {"name: hello\nowner: x\nhostnames: [\"a b\"]\n", "hostnames[0]"},
		"aws on local":  {"name: hello\nowner: x\ncapacity: 1\naws: {instance_type: t3.micro}\n", "aws"},
		"aws subnet":    {"name: hello\nowner: x\ncapacity: 1\nprovider: aws\naws: {subnets: [net-1]}\n", "aws.subnets[0]"},
		"aws sg":        {"name: hello\nowner: x\ncapacity: 1\nprovider: aws\naws: {security_groups: [x]}\n", "aws.security_groups[0]"},
		"aws type":      {"name: hello\nowner: x\ncapacity: 1\nprovider: aws\naws: {instance_type: big}\n", "aws.instance_type"},
		"no target":     {"name: hello\nowner: x\ncapacity: 1\nautoscale: {max: 4}\n", "autoscale"},
		"two targets":   {"name: hello\nowner: x\ncapacity: 1\nautoscale: {target_cpu: 50, target_requests_per_instance: 10}\n", "autoscale"},
		"scale max":     {"name: hello\nowner: x\ncapacity: 1\nautoscale: {max: 11, target_cpu: 50}\n", "autoscale.max"},
		"scale min":     {"name: hello\nowner: x\ncapacity: 1\nautoscale: {min: 5, max: 4, target_cpu: 50}\n", "autoscale.min"},
		"cpu":           {"name: hello\nowner: x\ncapacity: 1\nautoscale: {target_cpu: 150}\n", "autoscale.target_cpu"},
		"rps":           {"name: hello\nowner: x\ncapacity: 1\nautoscale: {target_requests_per_instance: -3}\n", "autoscale.target_requests_per_instance"},
		"cooldown":      {"name: hello\nowner: x\ncapacity: 1\nautoscale: {target_cpu: 50, scale_up_cooldown: 1ms}\n", "autoscale.scale_up_cooldown"},
	}
	for name, c := range cases {
		_, err := Parse(strings.NewReader(c.yaml))
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: err = %v, want ValidationError", name, err)
			continue
		}
		found := false
		for _, f := range ve.Fields {
			found = found || f.Field == c.field
		}
		if !found {
			t.Errorf("%s: fields %v, want %s", name, ve.Fields, c.field)
		}
	}
}

// Autoscale defaults to capacity..max_capacity, and Desired rounds the
// load per target up within min..max.
func TestAutoscale(t *testing.T) {
	s, err := Parse(strings.NewReader(hello + "autoscale: {target_requests_per_instance: 100}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := *s.Autoscale
	if a.Min != 3 || a.Max != 10 || a.Window.D() == 0 || a.ScaleUpCooldown.D() == 0 || a.ScaleDownCooldown.D() == 0 {
		t.Fatalf("defaults: %+v", a)
	}
	for load, want := range map[float64]int{0: 3, 250: 3, 301: 4, 999: 10, 1e9: 10, -5: 3} {
		if got := a.Desired(load); got != want {
			t.Errorf("Desired(%v) = %d, want %d", load, got, want)
		}
	}
}

func TestParseRejectsUnknownFieldsAndBadYAML(t *testing.T) {
	for _, in := range []string{"name: hello\nowner: x\ncapacity: 1\ncolour: red\n", "", "name: [", "health:\n  interval: soon\n"} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q) succeeded", in)
		}
	}
}

// An unknown field is named in the spec's own words, with the field meant
// when one is near (issue 29: "field capacty not found in type
// spec.Service"), at any depth of the spec.
func TestUnknownFieldsAreSpelledOut(t *testing.T) {
	for in, want := range map[string]string{
		"name: hello\nowner: x\ncapacty: 1\n":                            "line 3: capacty: unknown field; did you mean capacity?",
		"name: hello\nowner: x\ncapacity: 1\nhealth:\n  pth: /h\n":       "line 5: pth: unknown field; did you mean path?",
		"name: hello\nowner: x\nstrategy:\n  canary:\n    duraton: 1s\n": "duraton: unknown field; did you mean duration?",
		"name: hello\nowner: x\ncolour: red\n":                           "line 3: colour: unknown field",
	} {
		_, err := Parse(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "not found in type") {
			t.Errorf("Parse(%q): %v, want %q", in, err, want)
		}
	}
	if _, err := Parse(strings.NewReader("name: hello\nowner: x\ncolour: red\n")); strings.Contains(err.Error(), "did you mean") {
		t.Errorf("a field near none suggested one: %v", err)
	}
}

func TestCheckArtifact(t *testing.T) {
	local := Service{Provider: ProviderLocal}
	aws := Service{Provider: ProviderAWS}
	if err := local.CheckArtifact(events.Artifact{Command: []string{"x"}}); err != nil {
		t.Error(err)
	}
	if err := local.CheckArtifact(events.Artifact{}); err == nil {
		t.Error("empty local artifact accepted")
	}
	if err := aws.CheckArtifact(events.Artifact{AMI: "ami-123"}); err != nil {
		t.Error(err)
	}
	if err := aws.CheckArtifact(events.Artifact{AMI: "img-1"}); err == nil {
		t.Error("bad ami accepted")
	}
	if _, err := local.Resolve(events.Artifact{}, "v1"); err == nil {
		t.Error("a release of a spec without a command resolved")
	}
}
