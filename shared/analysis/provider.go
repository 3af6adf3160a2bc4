package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	cw "github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/theory/jsonpath"
)

// ErrNoData: the provider answered, but not with one finite number.
var ErrNoData = errors.New("no data")

// MaxAnswerBytes bounds a web provider's answer.
const MaxAnswerBytes = 1 << 20

// Reader reads the metrics of templates from their providers.
type Reader struct {
	// HTTP is the client of both providers (default: one shared client
	// without proxy, redirects or link-local addresses; NewReader makes
	// one that also keeps to an egress allow-list).
	HTTP *http.Client
	// Now is the evaluation time of PromQL queries and the end of
	// CloudWatch's (default time.Now).
	Now func() time.Time
	// CloudWatch gives the cloudwatch provider's client for a region
	// (default: the SDK's default configuration for it).
	CloudWatch func(ctx context.Context, region string) (*cw.Client, error)
}

func (r Reader) client() *http.Client {
	if r.HTTP != nil {
		return r.HTTP
	}
	return defaultClient
}

// defaultClient is the providers' client: one transport (its connections
// reused from reading to reading), no proxy, no redirect, no link-local
// address.
var defaultClient = newClient(nil)

// NewReader is a Reader whose client connects only to addresses in allow
// (and never to a link-local one); with allow empty, to any address but a
// link-local one.
func NewReader(allow Egress) Reader {
	if len(allow) == 0 {
		return Reader{}
	}
	return Reader{HTTP: newClient(allow)}
}

func newClient(allow Egress) *http.Client {
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 5 * time.Second, Control: allow.control}).DialContext,
			MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Egress is the admin's allow-list of the addresses template providers may
// be read from (up --provider-egress): a template's address is a team's to
// choose, and the canary and the watchdog read it from inside the
// deployment. Empty allows any address but a link-local one.
type Egress []netip.Prefix

// ParseEgress reads a comma-separated list of CIDR prefixes and addresses
// (an address is its own /32 or /128).
func ParseEgress(s string) (Egress, error) {
	var out Egress
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("provider egress %q: not a CIDR prefix or an address", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Set appends a comma-separated list of prefixes and addresses (a flag's
// value: the flag may be repeated).
func (e *Egress) Set(s string) error {
	more, err := ParseEgress(s)
	if err != nil {
		return err
	}
	*e = append(*e, more...)
	return nil
}

// Type names the flag's value for pflag.
func (e *Egress) Type() string { return "cidrs" }

// String lists the prefixes, comma-separated.
func (e Egress) String() string {
	var parts []string
	for _, p := range e {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, ",")
}

// control refuses a connection before it is made to a link-local address
// (a cloud's instance metadata, 169.254.169.254, whatever name resolves
// there), and to any address outside the allow-list when there is one. It
// sees the address dialled, after name resolution.
func (e Egress) control(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%s: not an address", address)
	}
	a = a.Unmap()
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() {
		return fmt.Errorf("%s: a link-local address is never a provider", address)
	}
	if len(e) == 0 {
		return nil
	}
	for _, p := range e {
		if p.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("%s: not in the providers' egress allow-list (%s)", address, e)
}

// at is a reading's evaluation time: v.At, or now.
func (r Reader) at(v Vars) time.Time {
	switch {
	case !v.At.IsZero():
		return v.At
	case r.Now != nil:
		return r.Now()
	}
	return time.Now()
}

// Read is one reading of expr (a query, events or total of m) for the
// group in v: one finite number, or an error (ErrNoData when the provider
// answered without one). It never takes longer than m's timeout.
func (r Reader) Read(ctx context.Context, m Metric, expr string, v Vars) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, max(m.Timeout.D(), 100*time.Millisecond))
	defer cancel()
	var x float64
	var err error
	switch m.Provider {
	case ProviderPrometheus:
		x, err = r.prometheus(ctx, m.Address, Render(expr, v, nil), r.at(v))
	case ProviderWeb:
		x, err = r.web(ctx, Render(m.Address, v, url.QueryEscape), Render(expr, v, nil))
	case ProviderCloudWatch:
		x, err = r.cloudwatch(ctx, m.Address, m.Kind, Render(expr, v, nil), v.Since, r.at(v))
	default:
		return 0, fmt.Errorf("provider %q", m.Provider)
	}
	if err == nil && (math.IsNaN(x) || math.IsInf(x, 0)) {
		err = fmt.Errorf("%w: %v", ErrNoData, x)
	}
	return x, err
}

// prometheus evaluates an instant query: a scalar, or a vector of exactly
// one sample.
func (r Reader) prometheus(ctx context.Context, address, query string, at time.Time) (float64, error) {
	c, err := api.NewClient(api.Config{Address: address, Client: r.client()})
	if err != nil {
		return 0, err
	}
	val, _, _, err := promv1.NewAPI(c).Query(ctx, query, at)
	if err != nil {
		return 0, fmt.Errorf("prometheus %s: %w", address, err)
	}
	switch v := val.(type) {
	case *model.Scalar:
		return float64(v.Value), nil
	case model.Vector:
		if len(v) != 1 {
			return 0, fmt.Errorf("%w: %d series (want one: sum the query)", ErrNoData, len(v))
		}
		return float64(v[0].Value), nil
	}
	return 0, fmt.Errorf("%w: a %s, not a scalar or a vector", ErrNoData, val.Type())
}

// web GETs the URL and reads the one number path selects in its JSON.
func (r Reader) web(ctx context.Context, address, path string) (float64, error) {
	p, err := jsonpath.Parse(path)
	if err != nil {
		return 0, fmt.Errorf("jsonpath %q: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, address, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client().Do(req)
	if err != nil {
		return 0, fmt.Errorf("web %s: %w", address, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("web %s: status %d", address, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return 0, fmt.Errorf("web %s: %w", address, err)
	}
	if len(body) > MaxAnswerBytes {
		return 0, fmt.Errorf("web %s: an answer over %d bytes", address, MaxAnswerBytes)
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return 0, fmt.Errorf("%w: web %s answered no JSON: %v", ErrNoData, address, err)
	}
	nodes := p.Select(doc)
	if len(nodes) != 1 {
		return 0, fmt.Errorf("%w: %s selects %d values in the answer of %s (want one)", ErrNoData, path, len(nodes), address)
	}
	switch x := nodes[0].(type) {
	case float64:
		return x, nil
	case json.Number:
		return x.Float64()
	}
	return 0, fmt.Errorf("%w: %s selects a %T, not a number", ErrNoData, path, nodes[0])
}
