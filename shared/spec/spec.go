// Package spec is the service spec: a team's declarative description of its
// service (owner, provider, capacity, health check, artifact defaults), read
// from YAML, validated field by field, and stored as JSON in the services
// bucket.
package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/hostname"
	"github.com/redblack/redblack/shared/subjects"
)

// Providers a service can run on.
const (
	ProviderLocal = "local"
	ProviderAWS   = "aws"
)

// Protocols the instances of a service can speak.
const (
	// ProtocolHTTP: HTTP/1.1 (the default); HTTP/2 clients of the router
	// are proxied to it as HTTP/1.1.
	ProtocolHTTP = "http"
	// ProtocolH2C: HTTP/2 without TLS (and HTTP/1.1, as Go's h2c handler
	// serves both).
	ProtocolH2C = "h2c"
	// ProtocolGRPC: gRPC over h2c; grpc-status counts in the samples.
	ProtocolGRPC = "grpc"
)

// GlobalMaxCapacity caps every server group, whatever its spec says.
const GlobalMaxCapacity = 500

// Duration is a time.Duration written as "30s" in YAML and JSON.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "500ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads a duration string such as "500ms".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like \"30s\"", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Health is how instances are health checked.
type Health struct {
	Path               string   `yaml:"path" json:"path"`
	Interval           Duration `yaml:"interval" json:"interval"`
	HealthyThreshold   int      `yaml:"healthy_threshold" json:"healthy_threshold"`
	UnhealthyThreshold int      `yaml:"unhealthy_threshold" json:"unhealthy_threshold"`
}

// Artifact is the spec's artifact: the default of a release, and the
// policy of what a release request may choose (Resolve).
type Artifact struct {
	// Command is the local provider's command template: "{version}" in
	// an argument is replaced by the release's version.
	Command []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Env     map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// EnvSecrets adds secrets to the environment: variable → the name of a
	// file in the provisioner's secrets directory for the service
	// (<data>/secrets/<service>/<name>). Values never enter an event.
	EnvSecrets map[string]string `yaml:"env_secrets,omitempty" json:"env_secrets,omitempty"`
	// Paths are directories a release request's program may come from
	// (local): besides the template's own program, a request may run one
	// under these.
	Paths []string `yaml:"paths,omitempty" json:"paths,omitempty"`
	// AMIOwners and AMINamePrefix allow a release request's AMI (aws): its
	// owner must be listed, or its name start with the prefix. Without
	// either, a request may not choose an AMI other than the spec's.
	AMIOwners             []string `yaml:"ami_owners,omitempty" json:"ami_owners,omitempty"`
	AMINamePrefix         string   `yaml:"ami_name_prefix,omitempty" json:"ami_name_prefix,omitempty"`
	AMI                   string   `yaml:"ami,omitempty" json:"ami,omitempty"`
	InstanceType          string   `yaml:"instance_type,omitempty" json:"instance_type,omitempty"`
	UserData              string   `yaml:"user_data,omitempty" json:"user_data,omitempty"`
	LaunchTemplate        string   `yaml:"launch_template,omitempty" json:"launch_template,omitempty"`
	LaunchTemplateVersion string   `yaml:"launch_template_version,omitempty" json:"launch_template_version,omitempty"`
}

// Event converts the spec artifact to the event form (the template as is).
func (a Artifact) Event() events.Artifact {
	return events.Artifact{Command: a.Command, Env: a.Env, EnvSecrets: a.EnvSecrets, AMI: a.AMI, InstanceType: a.InstanceType,
		UserData: a.UserData, LaunchTemplate: a.LaunchTemplate, LaunchTemplateVersion: a.LaunchTemplateVersion}
}

// Service is a service spec.
type Service struct {
	Name     string `yaml:"name" json:"name"`
	Owner    string `yaml:"owner" json:"owner"`
	Provider string `yaml:"provider" json:"provider"`
	// Capacity is the number of instances of the serving group (required).
	Capacity    int      `yaml:"capacity" json:"capacity"`
	MaxCapacity int      `yaml:"max_capacity" json:"max_capacity"`
	Hostnames   []string `yaml:"hostnames,omitempty" json:"hostnames,omitempty"`
	// Port, when set, is a router port that serves only this service,
	// whatever the Host header.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// Protocol is what the instances speak (default ProtocolHTTP): with
	// h2c or grpc, the router sends its HTTP/2 requests to them as HTTP/2
	// without TLS (h2c), and counts grpc-status in the samples.
	Protocol string   `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	Health   Health   `yaml:"health" json:"health"`
	Artifact Artifact `yaml:"artifact,omitempty" json:"artifact,omitempty"`
	Strategy Strategy `yaml:"strategy" json:"strategy"`
	Chaos    Chaos    `yaml:"chaos" json:"chaos"`
	// AWS places the service's groups when its provider is aws.
	AWS AWS `yaml:"aws,omitempty" json:"aws,omitempty"`
	// Autoscale, when set, sizes the serving group by its load; a release
	// launches its new group at the serving group's current size.
	Autoscale *Autoscale `yaml:"autoscale,omitempty" json:"autoscale,omitempty"`
	// Traffic tunes how the router treats the service's requests.
	Traffic Traffic `yaml:"traffic,omitempty" json:"traffic,omitempty"`
}

// Traffic tunes how the router treats a service's requests.
type Traffic struct {
	// RetryNonIdempotent lets a request of any method that got a 5xx from
	// a new or canary group be answered from the fallback group (by
	// default only GET, HEAD, OPTIONS, TRACE, PUT and DELETE are, and any
	// request whose connection was never made).
	RetryNonIdempotent bool `yaml:"retry_non_idempotent,omitempty" json:"retry_non_idempotent,omitempty"`
}

// FieldError is one invalid field.
type FieldError struct {
	Field  string
	Reason string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// ValidationError lists every invalid field of a spec.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid service spec: " + strings.Join(parts, "; ")
}

// Parse reads one YAML spec, refusing unknown fields, fills defaults and
// validates it.
func Parse(r io.Reader) (Service, error) {
	var s Service
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return s, errors.New("invalid service spec: the file is empty")
		}
		return s, fmt.Errorf("invalid service spec: %s", spellUnknown(err.Error()))
	}
	s.Default()
	return s, s.Validate()
}

// Default fills unset fields with their defaults.
func (s *Service) Default() {
	if s.Provider == "" {
		s.Provider = ProviderLocal
	}
	if s.MaxCapacity == 0 {
		s.MaxCapacity = max(s.Capacity*2, 10)
	}
	if s.Protocol == "" {
		s.Protocol = ProtocolHTTP
	}
	if s.Health.Path == "" {
		s.Health.Path = "/healthz"
	}
	if s.Health.Interval == 0 {
		s.Health.Interval = Duration(500 * time.Millisecond)
	}
	if s.Health.HealthyThreshold == 0 {
		s.Health.HealthyThreshold = 2
	}
	if s.Health.UnhealthyThreshold == 0 {
		s.Health.UnhealthyThreshold = 3
	}
	s.defaultStrategy()
	s.defaultAutoscale()
}

// Validate checks every field and returns a *ValidationError naming each bad one.
func (s Service) Validate() error {
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{field, fmt.Sprintf(format, args...)})
	}
	if err := subjects.ValidateService(s.Name); err != nil {
		bad("name", "%q is not a valid service name: want [a-z][a-z0-9-]{0,30}", s.Name)
	}
	if strings.TrimSpace(s.Owner) == "" {
		bad("owner", "required: the team that owns the service")
	}
	if s.Provider != ProviderLocal && s.Provider != ProviderAWS {
		bad("provider", "%q: want %q or %q", s.Provider, ProviderLocal, ProviderAWS)
	}
	if s.Capacity < 1 || s.Capacity > GlobalMaxCapacity {
		bad("capacity", "%d: want 1..%d", s.Capacity, GlobalMaxCapacity)
	}
	if s.MaxCapacity < s.Capacity || s.MaxCapacity > GlobalMaxCapacity {
		bad("max_capacity", "%d: want capacity (%d)..%d", s.MaxCapacity, s.Capacity, GlobalMaxCapacity)
	}
	for i, h := range s.Hostnames {
		if _, err := hostname.Normalize(h); err != nil || strings.ContainsAny(h, " /:") {
			bad(fmt.Sprintf("hostnames[%d]", i), "%q is not a host name", h)
		}
	}
	if s.Port != 0 && (s.Port < 1024 || s.Port > 65535) {
		bad("port", "%d: want 1024..65535 (or none)", s.Port)
	}
	if s.Protocol != ProtocolHTTP && s.Protocol != ProtocolH2C && s.Protocol != ProtocolGRPC {
		bad("protocol", "%q: want %q, %q or %q", s.Protocol, ProtocolHTTP, ProtocolH2C, ProtocolGRPC)
	}
	if !strings.HasPrefix(s.Health.Path, "/") {
		bad("health.path", "%q must start with /", s.Health.Path)
	}
	if d := s.Health.Interval.D(); d < 50*time.Millisecond || d > time.Minute {
		bad("health.interval", "%s: want 50ms..1m", d)
	}
	if s.Health.HealthyThreshold < 1 || s.Health.HealthyThreshold > 100 {
		bad("health.healthy_threshold", "%d: want 1..100", s.Health.HealthyThreshold)
	}
	if s.Health.UnhealthyThreshold < 1 || s.Health.UnhealthyThreshold > 100 {
		bad("health.unhealthy_threshold", "%d: want 1..100", s.Health.UnhealthyThreshold)
	}
	s.validateStrategy(bad)
	s.validateAutoscale(bad)
	s.AWS.validate(s.Provider, bad)
	if !s.Artifact.Event().IsZero() {
		if err := s.CheckArtifact(s.Artifact.Event()); err != nil {
			bad("artifact", "%v", err)
		}
	}
	for i, dir := range s.Artifact.Paths {
		if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
			bad(fmt.Sprintf("artifact.paths[%d]", i), "%q: want a clean absolute directory, not /", dir)
		}
	}
	for k, name := range s.Artifact.EnvSecrets {
		if k == "" || strings.ContainsAny(k, "=\x00") || !secretName.MatchString(name) {
			bad("artifact.env_secrets", "%s: %q: want a variable name and a secret name of [A-Za-z0-9._-] (not . or ..)", k, name)
		}
	}
	for i, o := range s.Artifact.AMIOwners {
		if o == "" {
			bad(fmt.Sprintf("artifact.ami_owners[%d]", i), "empty")
		}
	}
	if (len(s.Artifact.Paths) > 0) && s.Provider != ProviderLocal {
		bad("artifact.paths", "for the local provider")
	}
	if (len(s.Artifact.AMIOwners) > 0 || s.Artifact.AMINamePrefix != "") && s.Provider != ProviderAWS {
		bad("artifact.ami_owners", "ami_owners and ami_name_prefix are for the aws provider")
	}
	if len(errs) > 0 {
		return &ValidationError{Fields: errs}
	}
	return nil
}

// CheckArtifact reports whether a fits the service's provider: the local
// provider runs a command, the aws provider an AMI or a launch template.
func (s Service) CheckArtifact(a events.Artifact) error {
	switch s.Provider {
	case ProviderLocal:
		if a.AMI != "" || a.LaunchTemplate != "" || a.InstanceType != "" || a.UserData != "" {
			return errors.New("ami, launch_template, instance_type and user_data are for the aws provider, not local")
		}
		if len(a.Command) == 0 || a.Command[0] == "" {
			return errors.New("the local provider needs a command (an argv array)")
		}
	case ProviderAWS:
		if a.AMI == "" && a.LaunchTemplate == "" {
			return errors.New("the aws provider needs an ami or a launch_template")
		}
		if a.AMI != "" && !strings.HasPrefix(a.AMI, "ami-") {
			return fmt.Errorf("ami %q does not look like ami-…", a.AMI)
		}
		if len(a.Command) > 0 {
			return errors.New("command is for the local provider, not aws")
		}
	default:
		return fmt.Errorf("unknown provider %q", s.Provider)
	}
	for k := range a.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env name %q is invalid", k)
		}
	}
	return nil
}

// Resolve returns the artifact of a release of version: the spec's, with
// "{version}" filled in, when the request sets nothing; otherwise the
// request's program (local) or AMI and instance type (aws) with everything
// else from the spec. A request may not set env, secrets, user data or a
// launch template, and its program or AMI must be one Allows.
func (s Service) Resolve(req events.Artifact, version string) (events.Artifact, error) {
	out := s.Artifact.Event()
	out.Command = make([]string, len(s.Artifact.Command))
	for i, arg := range s.Artifact.Command {
		out.Command[i] = strings.ReplaceAll(arg, "{version}", version)
	}
	if req.IsZero() {
		return out, s.Allows(out)
	}
	switch {
	case len(req.Env) > 0 || len(req.EnvSecrets) > 0:
		return out, errors.New("env: a release request may not set the environment; the spec's env is used")
	case req.UserData != "" || req.LaunchTemplate != "" || req.LaunchTemplateVersion != "":
		return out, errors.New("user_data and launch templates come from the spec, not a release request")
	}
	if len(req.Command) > 0 {
		out.Command = req.Command
	}
	if req.AMI != "" {
		out.AMI = req.AMI
	}
	if req.InstanceType != "" {
		out.InstanceType = req.InstanceType
	}
	return out, s.Allows(out)
}

// Allows reports whether a is an artifact the spec allows: it fits the
// provider; its program is the template's, or a clean absolute path under
// one of Paths; its env, secrets, user data and launch template are the
// spec's; its AMI is the spec's unless AMIOwners or AMINamePrefix allow
// others (which the aws provider checks against the image itself).
func (s Service) Allows(a events.Artifact) error {
	if err := s.CheckArtifact(a); err != nil {
		return err
	}
	if !maps.Equal(a.Env, s.Artifact.Env) || !maps.Equal(a.EnvSecrets, s.Artifact.EnvSecrets) {
		return errors.New("env: not the spec's")
	}
	if a.UserData != s.Artifact.UserData || a.LaunchTemplate != s.Artifact.LaunchTemplate || a.LaunchTemplateVersion != s.Artifact.LaunchTemplateVersion {
		return errors.New("user_data or launch template: not the spec's")
	}
	switch s.Provider {
	case ProviderLocal:
		if !s.allowsProgram(a.Command[0]) {
			allowed := "the spec's own program"
			if len(s.Artifact.Command) > 0 {
				allowed = fmt.Sprintf("%q", s.Artifact.Command[0])
			}
			if len(s.Artifact.Paths) > 0 {
				allowed += fmt.Sprintf(" or a program under %v", s.Artifact.Paths)
			}
			return fmt.Errorf("command: %q is not a program this service may run: want %s (spec artifact.command and artifact.paths)", a.Command[0], allowed)
		}
	case ProviderAWS:
		if a.AMI != "" && a.AMI != s.Artifact.AMI && len(s.Artifact.AMIOwners) == 0 && s.Artifact.AMINamePrefix == "" {
			return fmt.Errorf("ami %s is not the spec's (%s): set artifact.ami_owners or artifact.ami_name_prefix to allow others", a.AMI, s.Artifact.AMI)
		}
	}
	return nil
}

func (s Service) allowsProgram(prog string) bool {
	if len(s.Artifact.Command) > 0 && prog == s.Artifact.Command[0] {
		return true
	}
	if !filepath.IsAbs(prog) || filepath.Clean(prog) != prog {
		return false
	}
	for _, dir := range s.Artifact.Paths {
		if rel, err := filepath.Rel(filepath.Clean(dir), prog); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return true
		}
	}
	return false
}

// secretName is a file name in the secrets directory: no separators, not
// . or ..
var secretName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`)

// Encode returns the JSON stored in the services bucket.
func (s Service) Encode() ([]byte, error) { return json.Marshal(s) }

// Decode reads a spec stored in the services bucket.
func Decode(b []byte) (Service, error) {
	var s Service
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("spec: decode stored spec: %w", err)
	}
	s.Default() // a spec stored before a field existed gets its default
	// validated where it is read, not only where it was written
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("spec: stored spec: %w", err)
	}
	return s, nil
}

// AWS is where the aws provider puts a service's groups; empty fields take
// the provider's defaults (redblack up --aws-subnets …).
type AWS struct {
	Subnets        []string `yaml:"subnets,omitempty" json:"subnets,omitempty"`
	SecurityGroups []string `yaml:"security_groups,omitempty" json:"security_groups,omitempty"`
	InstanceType   string   `yaml:"instance_type,omitempty" json:"instance_type,omitempty"`
}

// IsZero reports whether nothing is set.
func (a AWS) IsZero() bool {
	return len(a.Subnets) == 0 && len(a.SecurityGroups) == 0 && a.InstanceType == ""
}

func (a AWS) validate(provider string, bad func(field, format string, args ...any)) {
	if provider != ProviderAWS && !a.IsZero() {
		bad("aws", "set, but the provider is %q", provider)
	}
	for i, sn := range a.Subnets {
		if !strings.HasPrefix(sn, "subnet-") {
			bad(fmt.Sprintf("aws.subnets[%d]", i), "%q is not a subnet id (subnet-…)", sn)
		}
	}
	for i, sg := range a.SecurityGroups {
		if !strings.HasPrefix(sg, "sg-") {
			bad(fmt.Sprintf("aws.security_groups[%d]", i), "%q is not a security group id (sg-…)", sg)
		}
	}
	if a.InstanceType != "" && !strings.Contains(a.InstanceType, ".") {
		bad("aws.instance_type", "%q is not an instance type like t3.micro", a.InstanceType)
	}
}
