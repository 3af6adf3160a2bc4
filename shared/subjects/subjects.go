// Package subjects builds and parses the NATS subjects redblack publishes on.
// Every subject carries the service name as its second token so that NATS
// permissions and consumer filters can be set per team.
package subjects

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Domains: the first token of every redblack subject.
const (
	DomainRelease = "release"
	DomainFleet   = "fleet"
	DomainChaos   = "chaos"
	DomainMetrics = "metrics"
	DomainDLQ     = "dlq"
)

// RouterApplied: every router (no queue group) answers a request here with
// its id and, when the body names a service, the routes revision its live
// table holds for it.
const RouterApplied = "redblack.router.applied"

// CallerApplied: every discovery client of an inner tier answers here as
// a router does on RouterApplied. It is a subject of its own so that a
// caller's credentials, which may answer here, can never pass for a
// router's.
const CallerApplied = "redblack.caller.applied"

// Invalid is the service token used for events about a request whose own
// subject named no valid service (it cannot be a service name itself).
const Invalid = "_invalid"

var serviceRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// ErrInvalidService is returned for a name that is not a valid service name.
var ErrInvalidService = errors.New("invalid service name")

// ValidateService reports whether name is a valid service name:
// [a-z][a-z0-9-]{0,30}.
func ValidateService(name string) error {
	if !serviceRE.MatchString(name) {
		return fmt.Errorf("%w %q: want [a-z][a-z0-9-]{0,30}", ErrInvalidService, name)
	}
	return nil
}

// Release is the subject of a release event: release.<service>.<event>.
func Release(service, event string) string { return DomainRelease + "." + service + "." + event }

// Fleet is the subject of a fleet event or command: fleet.<service>.<event>.
func Fleet(service, event string) string { return DomainFleet + "." + service + "." + event }

// Chaos is the subject of a chaos event: chaos.<service>.<event>.
func Chaos(service, event string) string { return DomainChaos + "." + service + "." + event }

// Sample is the subject of a metrics sample:
// metrics.<service>.<group>.<publisher>.<id>. The publisher token is the
// kind of user that may publish it (PublisherRouter, or CallerPublisher of
// the calling service), which the server's permissions bind to the
// publisher's creds; id names one publisher of that kind (a router's id, a
// discovery client's), and the sample's body must carry the same.
func Sample(service, group, publisher, id string) string {
	return DomainMetrics + "." + service + "." + group + "." + publisher + "." + id
}

// GroupSamples filters every sample of one group, from every publisher;
// group ">" filters every group's.
func GroupSamples(service, group string) string {
	if group == ">" {
		return DomainMetrics + "." + service + ".>"
	}
	return DomainMetrics + "." + service + "." + group + ".>"
}

// PublisherRouter is the publisher token of the routers' samples.
const PublisherRouter = "router"

// CallerPublisher is the publisher token of the samples that the discovery
// clients in service's instances publish of the services they call.
func CallerPublisher(service string) string { return "caller-" + service }

// ParseSample splits a sample's subject (Sample); ok is false for any
// other shape.
func ParseSample(subject string) (service, group, publisher, id string, ok bool) {
	t := strings.Split(subject, ".")
	if len(t) != 5 || t[0] != DomainMetrics {
		return "", "", "", "", false
	}
	for _, tok := range t[1:] {
		if tok == "" || tok == "*" || tok == ">" {
			return "", "", "", "", false
		}
	}
	return t[1], t[2], t[3], t[4], true
}

// AllReleases filters every release event of one service, or of all
// services when service is "".
func AllReleases(service string) string { return filter(DomainRelease, service) }

// AllFleet filters every fleet event of one service, or of all when "".
func AllFleet(service string) string { return filter(DomainFleet, service) }

// AllChaos filters every chaos event of one service, or of all when "".
func AllChaos(service string) string { return filter(DomainChaos, service) }

func filter(domain, service string) string {
	if service == "" {
		return domain + ".>"
	}
	return domain + "." + service + ".>"
}

// Parsed is a subject split into its parts.
type Parsed struct {
	Domain  string // release, fleet, chaos, metrics
	Service string // the second token, not validated
	Event   string // the rest, e.g. "canary.passed"
}

// Parse splits a redblack subject. It fails when the subject has fewer than
// three tokens. The service token is returned as is: call ValidateService.
func Parse(subject string) (Parsed, error) {
	parts := strings.SplitN(subject, ".", 3)
	if len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Parsed{}, fmt.Errorf("subjects: %q is not <domain>.<service>.<event>", subject)
	}
	return Parsed{Domain: parts[0], Service: parts[1], Event: parts[2]}, nil
}

// APIPrefix starts the subjects of the team API (served by the canary
// service): redblack.api.<team>.<user>.<verb>.<service>. A user may publish
// only under its own team and user, so the server's permission check makes
// the subject the caller's identity.
const APIPrefix = "redblack.api"

// API is the subject of one API call.
func API(team, user, verb, service string) string {
	return APIPrefix + "." + team + "." + user + "." + verb + "." + service
}

// The team API's verbs on analysis templates: their subject's last token
// is the template's name, not a service's, so a team may call them for any
// name (the template is stored under the caller's team).
const (
	VerbAnalysisApply = "analysis-apply"
	VerbAnalysisGet   = "analysis-get"
)

// APICall is an API subject split into its parts.
type APICall struct {
	Team, User, Verb, Service string
}

// ParseAPI splits an API subject and validates its tokens.
func ParseAPI(subject string) (APICall, error) {
	rest, ok := strings.CutPrefix(subject, APIPrefix+".")
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 4 {
		return APICall{}, fmt.Errorf("subjects: %q is not %s.<team>.<user>.<verb>.<service>", subject, APIPrefix)
	}
	c := APICall{Team: parts[0], User: parts[1], Verb: parts[2], Service: parts[3]}
	for _, tok := range []string{c.Team, c.User, c.Service} {
		if err := ValidateService(tok); err != nil {
			return APICall{}, fmt.Errorf("subjects: %q: %w", subject, err)
		}
	}
	return c, nil
}
