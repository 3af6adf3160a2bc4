// Package events defines redblack's events: the CloudEvents 1.0 envelope in
// structured JSON mode, one Kind per event of the release flow, the Go type of
// each event's data, and deterministic ids for derived events.
package events

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// SpecVersion is the CloudEvents version of every envelope.
const SpecVersion = "1.0"

// ContentType is the data content type of every redblack event.
const ContentType = "application/json"

// MaxEventSize bounds what Decode accepts; larger documents are refused
// before parsing.
const MaxEventSize = 1 << 20

// Event is a CloudEvents 1.0 envelope in structured JSON mode. ReleaseID is
// the extension attribute "releaseid", set on every event about a release so
// one release's whole story can be filtered.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	ReleaseID       string          `json:"releaseid,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
}

// ErrInvalid is wrapped by every validation and decoding error.
var ErrInvalid = errors.New("invalid event")

// New builds an event of kind k with a random id. subject is the CloudEvents
// subject (the service name); data is marshalled to JSON.
func New(source string, k Kind, subject, releaseID string, data any) (Event, error) {
	return NewWithID(NewID(), source, k, subject, releaseID, data)
}

// NewWithID builds an event with the given id: use DerivedID for events
// derived from another so a redelivered handler publishes the same id.
func NewWithID(id, source string, k Kind, subject, releaseID string, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("events: marshal %s data: %w", k.Type(), err)
	}
	e := Event{
		SpecVersion:     SpecVersion,
		ID:              id,
		Source:          source,
		Type:            k.Type(),
		Subject:         subject,
		Time:            time.Now().UTC(),
		DataContentType: ContentType,
		ReleaseID:       releaseID,
		Data:            raw,
	}
	return e, e.Validate()
}

// NewID returns a random 128-bit event id in hex.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("events: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// DerivedID is the deterministic id of the event of kind k that a handler
// derives for release releaseID on its attempt-th try (attempt 0 for the
// first). The same inputs always give the same id, so JetStream's duplicate
// window drops a second publish after a redelivery.
func DerivedID(releaseID string, k Kind, attempt int) string {
	return fmt.Sprintf("%s:%s:%d", releaseID, k.Type(), attempt)
}

// Validate checks the required CloudEvents attributes.
func (e Event) Validate() error {
	var problems []string
	if e.SpecVersion != SpecVersion {
		problems = append(problems, fmt.Sprintf("specversion %q, want %q", e.SpecVersion, SpecVersion))
	}
	if e.ID == "" {
		problems = append(problems, "id is empty")
	}
	if e.Source == "" {
		problems = append(problems, "source is empty")
	}
	if e.Type == "" {
		problems = append(problems, "type is empty")
	}
	for name, v := range map[string]string{"id": e.ID, "source": e.Source, "type": e.Type, "subject": e.Subject, "releaseid": e.ReleaseID} {
		if !utf8.ValidString(v) {
			problems = append(problems, name+" is not valid UTF-8")
		}
	}
	if e.Time.IsZero() {
		problems = append(problems, "time is missing")
	}
	if e.DataContentType != "" && e.DataContentType != ContentType {
		problems = append(problems, fmt.Sprintf("datacontenttype %q, want %q", e.DataContentType, ContentType))
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		problems = append(problems, "data is not JSON")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
}

// Encode validates e and returns its structured-mode JSON.
func (e Event) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// Decode parses and validates a structured-mode CloudEvent. It never panics,
// whatever the input.
func Decode(b []byte) (Event, error) {
	var e Event
	if len(b) > MaxEventSize {
		return e, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalid, len(b), MaxEventSize)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return e, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// LooksLikeEvent reports whether b is a JSON object with a "specversion"
// member, i.e. a CloudEvent rather than a bare request body.
func LooksLikeEvent(b []byte) bool {
	var probe struct {
		SpecVersion *json.RawMessage `json:"specversion"`
	}
	return json.Unmarshal(b, &probe) == nil && probe.SpecVersion != nil
}

// DecodeData unmarshals the event's data into v, refusing unknown fields.
func (e Event) DecodeData(v any) error {
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: data of %s: %v", ErrInvalid, e.Type, err)
	}
	return nil
}

// Kind returns the registered Kind of the event's type.
func (e Event) Kind() (Kind, bool) { return KindOf(e.Type) }
