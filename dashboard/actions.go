package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// Action is a button's request: a rollback or an abort of a service's
// release, as the viewer whose creds come with it.
type Action struct {
	Verb    string `json:"verb"` // rollback or abort
	Service string `json:"service"`
	Reason  string `json:"reason"`
	// Release is the release to abort (abort only).
	Release string `json:"release,omitempty"`
	// Creds is the viewer's creds file (a team user's, from `redblack
	// team add`): used for this one call, never kept.
	Creds string `json:"creds"`
}

// maxActionBytes bounds an action's body (a creds file is about 1 KiB).
const maxActionBytes = 16 << 10

// action carries out a button's request through the team API, connected
// as the viewer: the server's permissions decide, and the release's audit
// trail names the viewer.
func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-origin request refused"})
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "want application/json"})
		return
	}
	var a Action
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxActionBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	verb := map[string]string{"rollback": api.VerbRollback, "abort": api.VerbAbort}[a.Verb]
	if verb == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `verb: want "rollback" or "abort"`})
		return
	}
	if err := subjects.ValidateService(a.Service); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if strings.TrimSpace(a.Creds) == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no creds: the dashboard acts only as a viewer who gives theirs (redblack team add)"})
		return
	}
	id, err := auth.IdentityOf([]byte(a.Creds))
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "creds: " + err.Error()})
		return
	}
	if s.cfg.Dial == nil {
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "this dashboard cannot act"})
		return
	}
	nc, err := s.cfg.Dial([]byte(a.Creds))
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "connect as " + id.String() + ": " + err.Error()})
		return
	}
	defer nc.Close()
	var body any = api.Reason{Reason: a.Reason}
	if verb == api.VerbAbort {
		body = api.AbortRequest{Release: a.Release, Reason: a.Reason}
	}
	var ans api.Answer
	if err := api.Call(nc, id, verb, a.Service, body, &ans); err != nil {
		code := http.StatusBadGateway
		if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(err.Error(), "Permissions Violation") {
			code = http.StatusForbidden
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	s.cfg.Log.Info().Str("verb", a.Verb).Str("service", a.Service).Str("by", id.String()).Str("release", ans.Release).Msg("dashboard action")
	writeJSON(w, http.StatusOK, ans)
}

// sameOrigin: a browser sends Origin on a POST; it must be this host.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true // not a browser's cross-site request (curl, the CLI)
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// maxAudit is the most events the audit view reads: a service's last.
const maxAudit = 1000

// audit lists a service's release events from the stream, newest last,
// filtered by kind or release.
func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	service := q.Get("service")
	if err := subjects.ValidateService(service); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	per := AuditPage
	if n, err := strconv.Atoi(q.Get("per_page")); err == nil && n > 0 && n < per {
		per = n
	}
	page, err := strconv.Atoi(q.Get("page"))
	if q.Get("page") == "" {
		page, err = 1, nil
	}
	if err != nil || page < 1 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "page: want 1, 2, …"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	kind, rel := q.Get("kind"), q.Get("release")
	out := []EventView{}
	if err := natsx.ReadAll(ctx, s.js, topology.StreamReleases, []string{subjects.AllReleases(service)}, func(m jetstream.Msg) {
		ev, err := events.Decode(m.Data())
		if err != nil {
			return
		}
		v := viewOf(ev)
		if (kind == "" || strings.Contains(v.Kind, kind)) && (rel == "" || v.Release == rel) {
			out = append(out, v)
		}
	}); err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	if len(out) > maxAudit {
		out = out[len(out)-maxAudit:]
	}
	// newest first, a page at a time
	slices.Reverse(out)
	pages := max(1, (len(out)+per-1)/per)
	lo := min((page-1)*per, len(out))
	writeJSON(w, http.StatusOK, AuditPageOf{Events: out[lo:min(lo+per, len(out))], Total: len(out), Page: page, Pages: pages})
}

// AuditPage is how many events a page of the audit view lists.
const AuditPage = 50

// AuditPageOf is one page of /api/audit: the matching events, newest
// first, of the last maxAudit.
type AuditPageOf struct {
	Events []EventView `json:"events"`
	Total  int         `json:"total"`
	Page   int         `json:"page"`
	Pages  int         `json:"pages"`
}
