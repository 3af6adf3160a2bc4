// Package analysis is a team's own metrics for the judge: analysis
// templates (named sets of metrics read from a provider, stored with
// `redblack analysis apply -f` and referenced by name from a service's
// strategy.analysis), and the providers that read them: Prometheus (a
// PromQL query, client_golang's api) and web (an HTTP endpoint answering
// JSON, read with an RFC 9535 JSONPath).
//
// A metric is one of two kinds:
//   - ratio: two counters, events and total (errors and requests, orders
//     and requests), read as cumulative sums per group; the judge compares
//     the two groups' ratios of what each counted since the judgement began,
//     on the confidence sequences the error rate uses;
//   - value: one reading per group per look (a p99 from a histogram, a
//     gauge), judged by a sign test over the looks on a confidence sequence.
//
// No data is never a pass: a query that fails, answers nothing, NaN or not
// a number, or times out makes the metric inconclusive at that look.
package analysis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/theory/jsonpath"
	"go.yaml.in/yaml/v3"

	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
)

// Providers.
const (
	ProviderPrometheus = "prometheus"
	ProviderWeb        = "web"
	ProviderCloudWatch = "cloudwatch"
)

// Kinds of metric.
const (
	KindRatio = "ratio"
	KindValue = "value"
)

// Template is a named set of metrics a team's specs use by name.
type Template struct {
	Name string `yaml:"name" json:"name"`
	// Owner is the team whose services may use it (the caller's team when
	// a team applies it).
	Owner   string   `yaml:"owner" json:"owner"`
	Metrics []Metric `yaml:"metrics" json:"metrics"`
}

// Metric is one metric read from a provider.
type Metric struct {
	Name     string `yaml:"name" json:"name"`
	Provider string `yaml:"provider" json:"provider"`
	// Address: prometheus, the server's base URL; web, the URL to GET,
	// templated like the queries.
	Address string `yaml:"address" json:"address"`
	Kind    string `yaml:"kind" json:"kind"`
	// Query (kind value) and Events and Total (kind ratio): PromQL for
	// prometheus, a JSONPath into the answer for web. Each may use
	// {{service}}, {{group}} and {{version}}.
	Query  string `yaml:"query,omitempty" json:"query,omitempty"`
	Events string `yaml:"events,omitempty" json:"events,omitempty"`
	Total  string `yaml:"total,omitempty" json:"total,omitempty"`
	// Direction is the way the canary may not move: increase, decrease or
	// either.
	Direction string `yaml:"direction" json:"direction"`
	// Tolerance: kind ratio, absolute (0.01 = one point); kind value,
	// relative (0.1 = 10 %).
	Tolerance float64 `yaml:"tolerance" json:"tolerance"`
	// Optional: a metric that stays inconclusive to the end does not fail
	// the canary (it is reported so).
	Optional bool `yaml:"optional" json:"optional"`
	// Timeout bounds each reading (default 5 s).
	Timeout spec.Duration `yaml:"timeout" json:"timeout"`
}

// Limits of a template.
const (
	MaxMetrics     = 10
	MaxQueryLength = 2048
	DefaultTimeout = 5 * time.Second
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// placeholderRE finds {{…}} in a query or address.
var placeholderRE = regexp.MustCompile(`\{\{\s*([^}]*?)\s*\}\}`)

// Placeholders a query may use.
var Placeholders = []string{"service", "group", "version"}

// Default fills the defaults: direction increase, timeout 5 s.
func (t *Template) Default() {
	for i := range t.Metrics {
		m := &t.Metrics[i]
		if m.Direction == "" {
			m.Direction = "increase"
		}
		if m.Timeout == 0 {
			m.Timeout = spec.Duration(DefaultTimeout)
		}
	}
}

// Validate checks every field; the error is a *spec.ValidationError naming
// each invalid one.
func (t Template) Validate() error {
	var fields []spec.FieldError
	bad := func(field, format string, args ...any) {
		fields = append(fields, spec.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if err := subjects.ValidateService(t.Name); err != nil {
		bad("name", "%q: want [a-z][a-z0-9-]{0,30}", t.Name)
	}
	if err := subjects.ValidateService(t.Owner); err != nil {
		bad("owner", "%q: want a team name", t.Owner)
	}
	if len(t.Metrics) == 0 || len(t.Metrics) > MaxMetrics {
		bad("metrics", "%d metrics: want 1..%d", len(t.Metrics), MaxMetrics)
	}
	seen := map[string]bool{}
	for i, m := range t.Metrics {
		f := fmt.Sprintf("metrics[%d]", i)
		if !nameRE.MatchString(m.Name) {
			bad(f+".name", "%q: want [a-z][a-z0-9_-]{0,62}", m.Name)
		}
		if seen[m.Name] {
			bad(f+".name", "%q is listed twice", m.Name)
		}
		seen[m.Name] = true
		switch m.Provider {
		case ProviderPrometheus, ProviderWeb, ProviderCloudWatch:
		default:
			bad(f+".provider", "%q: want %s, %s or %s", m.Provider, ProviderPrometheus, ProviderWeb, ProviderCloudWatch)
		}
		if m.Provider == ProviderCloudWatch {
			validateCloudWatch(m, bad, f)
		} else if u, err := url.Parse(placeholderRE.ReplaceAllString(m.Address, "x")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(f+".address", "%q: want an http(s) URL", m.Address)
		}
		if err := checkPlaceholders(m.Address); err != nil {
			bad(f+".address", "%v", err)
		}
		var queries [][2]string // field, query: in the file's order
		switch m.Kind {
		case KindRatio:
			queries = [][2]string{{"events", m.Events}, {"total", m.Total}}
			if m.Query != "" {
				bad(f+".query", "a ratio reads events and total, not query")
			}
		case KindValue:
			queries = [][2]string{{"query", m.Query}}
			if m.Events != "" || m.Total != "" {
				bad(f+".events", "a value reads query, not events and total")
			}
		default:
			bad(f+".kind", "%q: want %s or %s", m.Kind, KindRatio, KindValue)
		}
		for _, nq := range queries {
			name, q := nq[0], nq[1]
			switch {
			case strings.TrimSpace(q) == "":
				bad(f+"."+name, "empty")
			case len(q) > MaxQueryLength:
				bad(f+"."+name, "%d characters: at most %d", len(q), MaxQueryLength)
			default:
				if err := checkPlaceholders(q); err != nil {
					bad(f+"."+name, "%v", err)
				} else if m.Provider == ProviderWeb {
					if _, err := jsonpath.Parse(placeholderRE.ReplaceAllString(q, "x")); err != nil {
						bad(f+"."+name, "not a JSONPath: %v", err)
					}
				} else if m.Provider == ProviderCloudWatch {
					if cq, err := parseCloudWatch(q); err != nil {
						bad(f+"."+name, "%v", err)
					} else if m.Kind == KindRatio && cq.stat != "Sum" {
						bad(f+"."+name, "statistic %s: a ratio's events and total are counts since the judgement began (Sum)", cq.stat)
					}
				}
			}
		}
		switch m.Direction {
		case "increase", "decrease", "either":
		default:
			bad(f+".direction", "%q: want increase, decrease or either", m.Direction)
		}
		if m.Tolerance < 0 || m.Tolerance > 10 {
			bad(f+".tolerance", "%v: want 0..10", m.Tolerance)
		}
		if m.Timeout.D() < 100*time.Millisecond || m.Timeout.D() > time.Minute {
			bad(f+".timeout", "%s: want 100ms..1m", m.Timeout.D())
		}
	}
	if len(fields) > 0 {
		return &spec.ValidationError{Fields: fields}
	}
	return nil
}

func checkPlaceholders(s string) error {
	for _, m := range placeholderRE.FindAllStringSubmatch(s, -1) {
		known := false
		for _, p := range Placeholders {
			known = known || m[1] == p
		}
		if !known {
			return fmt.Errorf("{{%s}}: want one of {{service}}, {{group}}, {{version}}", m[1])
		}
	}
	return nil
}

// Vars are what a query is rendered with: one group of one release.
type Vars struct {
	Service, Group, Version string
	// Since is when the judgement began (a fixed time, kept across
	// restarts): a provider whose counts are per period (cloudwatch) sums
	// them from it, so a ratio's counts only grow.
	Since time.Time
	// At is the evaluation time of a reading (zero: the reader's now).
	// Every query of one reading is evaluated at the same time, so that a
	// ratio's events and total come from the same scrape: evaluated a
	// moment apart, a scrape between them puts a second's requests in the
	// total and none in the events.
	At time.Time
}

// Render substitutes the vars into a query or address; escape is applied to
// each value (url.QueryEscape for a URL, none for PromQL, whose label values
// here are service, group and version names: no quote or backslash).
func Render(s string, v Vars, escape func(string) string) string {
	if escape == nil {
		escape = func(s string) string { return s }
	}
	return placeholderRE.ReplaceAllStringFunc(s, func(m string) string {
		switch strings.TrimSpace(strings.Trim(m, "{}")) {
		case "service":
			return escape(v.Service)
		case "group":
			return escape(v.Group)
		case "version":
			return escape(v.Version)
		}
		return m
	})
}

// MaxTemplateBytes bounds a stored template.
const MaxTemplateBytes = 64 << 10

// Parse reads one YAML template, refusing unknown fields, fills the defaults
// and validates it.
func Parse(r io.Reader) (Template, error) {
	var t Template
	dec := yaml.NewDecoder(io.LimitReader(r, MaxTemplateBytes+1))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		if errors.Is(err, io.EOF) {
			return t, errors.New("invalid analysis template: the file is empty")
		}
		return t, fmt.Errorf("invalid analysis template: %v", err)
	}
	t.Default()
	return t, t.Validate()
}

// Decode reads a stored template (JSON, strict, validated).
func Decode(b []byte) (Template, error) {
	var t Template
	if len(b) > MaxTemplateBytes {
		return t, fmt.Errorf("analysis template of %d bytes (at most %d)", len(b), MaxTemplateBytes)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&t); err != nil {
		return t, fmt.Errorf("analysis template: %w", err)
	}
	return t, t.Validate()
}

// Key is a template's key in the analysis bucket: <owner>.<name>, so a
// team's specs find only its own templates.
func Key(owner, name string) string { return owner + "." + name }

// ErrNotFound: no such template for the team.
var ErrNotFound = errors.New("no such analysis template")

// Get reads the template name of team owner.
func Get(ctx context.Context, kv jetstream.KeyValue, owner, name string) (Template, error) {
	e, err := kv.Get(ctx, Key(owner, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Template{}, fmt.Errorf("analysis template %q of team %s: %w (redblack analysis apply -f)", name, owner, ErrNotFound)
	}
	if err != nil {
		return Template{}, fmt.Errorf("analysis: get %s: %w", Key(owner, name), err)
	}
	return Decode(e.Value())
}

// Put stores a template (defaults filled, validated); it returns created,
// updated or unchanged.
func Put(ctx context.Context, kv jetstream.KeyValue, t Template) (string, error) {
	t.Default()
	if err := t.Validate(); err != nil {
		return "", err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	key := Key(t.Owner, t.Name)
	cur, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if _, err := kv.Create(ctx, key, b); err != nil {
			return "", fmt.Errorf("analysis: create %s: %w", key, err)
		}
		return "created", nil
	case err != nil:
		return "", fmt.Errorf("analysis: get %s: %w", key, err)
	case bytes.Equal(cur.Value(), b):
		return "unchanged", nil
	}
	if _, err := kv.Update(ctx, key, b, cur.Revision()); err != nil {
		return "", fmt.Errorf("analysis: update %s: %w", key, err)
	}
	return "updated", nil
}

// Resolve reads the templates a spec names, in order.
func Resolve(ctx context.Context, kv jetstream.KeyValue, s spec.Service) ([]Template, error) {
	var out []Template
	for _, name := range s.Strategy.Analysis {
		t, err := Get(ctx, kv, s.Owner, name)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
