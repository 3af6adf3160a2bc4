// Package monkey is Chaos Monkey's logic, faithful to Netflix's: a global
// config (off and leashed by default, a weekday kill window, holidays), a
// schedule that flips a coin with p = 1/mean per work day and per group and
// picks a uniformly random minute in the window for heads, and the kill
// itself: enabled? outage check? leashed? then one uniformly random
// instance of the group that takes traffic, with min time between kills
// held by a compare-and-set, the tracker event acknowledged before the kill.
package monkey

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"path"
	"time"

	"github.com/redblack/redblack/shared/spec"
)

// Config is the monkey's global configuration, stored in the chaos bucket
// under ConfigKey and followed live.
type Config struct {
	// Enabled: no kill at all unless true (default false).
	Enabled bool `json:"enabled"`
	// Leashed: record what would be killed, kill nothing (default true).
	Leashed bool `json:"leashed"`
	// Paused stops kills until resumed (redblack chaos pause / resume).
	Paused bool `json:"paused,omitempty"`
	// Window is when kills happen: weekdays 09:00–15:00 by default.
	Window Window `json:"window"`
	// Holidays are dates (2026-12-25) without kills.
	Holidays []string `json:"holidays,omitempty"`
	// MaxErrorRate: the outage check fails above it (default 0.05).
	MaxErrorRate float64 `json:"max_error_rate"`
}

// Window is the daily kill window in a time zone.
type Window struct {
	Start    string         `json:"start"` // HH:MM
	End      string         `json:"end"`   // HH:MM, after Start
	Days     []time.Weekday `json:"days"`
	TimeZone string         `json:"time_zone"` // IANA name, default UTC
}

// DefaultConfig is off, leashed, weekdays 09:00–15:00 UTC.
func DefaultConfig() Config {
	return Config{Leashed: true, MaxErrorRate: 0.05, Window: Window{
		Start: "09:00", End: "15:00", TimeZone: "UTC",
		Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday},
	}}
}

// Validate checks the config; the error names the field.
func (c Config) Validate() error {
	if _, _, err := c.Window.bounds(); err != nil {
		return err
	}
	if _, err := time.LoadLocation(c.Window.TimeZone); err != nil {
		return fmt.Errorf("window.time_zone %q: %v", c.Window.TimeZone, err)
	}
	if len(c.Window.Days) == 0 {
		return fmt.Errorf("window.days: want at least one day")
	}
	for _, h := range c.Holidays {
		if _, err := time.Parse(time.DateOnly, h); err != nil {
			return fmt.Errorf("holidays: %q is not a date like 2026-12-25", h)
		}
	}
	if c.MaxErrorRate <= 0 || c.MaxErrorRate > 1 {
		return fmt.Errorf("max_error_rate %v: want 0..1", c.MaxErrorRate)
	}
	return nil
}

func (w Window) bounds() (start, end time.Duration, err error) {
	parse := func(field, s string) (time.Duration, error) {
		t, err := time.Parse("15:04", s)
		if err != nil {
			return 0, fmt.Errorf("window.%s %q: want HH:MM", field, s)
		}
		return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
	}
	if start, err = parse("start", w.Start); err != nil {
		return
	}
	if end, err = parse("end", w.End); err != nil {
		return
	}
	if end <= start {
		err = fmt.Errorf("window: end %s is not after start %s", w.End, w.Start)
	}
	return
}

func (c Config) location() *time.Location {
	loc, err := time.LoadLocation(c.Window.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// WorkDay reports whether the day of t (in the window's time zone) has a
// kill window: one of its days and not a holiday.
func (c Config) WorkDay(t time.Time) bool {
	t = t.In(c.location())
	day := false
	for _, d := range c.Window.Days {
		day = day || d == t.Weekday()
	}
	date := t.Format(time.DateOnly)
	for _, h := range c.Holidays {
		if h == date {
			return false
		}
	}
	return day
}

// InWindow reports whether t is inside a kill window.
func (c Config) InWindow(t time.Time) bool {
	if !c.WorkDay(t) {
		return false
	}
	start, end, err := c.Window.bounds()
	if err != nil {
		return false
	}
	t = t.In(c.location())
	since := t.Sub(time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location()))
	return since >= start && since < end
}

// Kill is one planned kill of a schedule unit (a service, or a server
// group with grouping "group").
type Kill struct {
	Service string    `json:"service"`
	Unit    string    `json:"unit"`
	At      time.Time `json:"at"`
}

// rng is a generator seeded from the unit and the period, so every chaos
// instance (and every restart) plans the same kills.
func rng(seed uint64, unit string, period int64) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(unit))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(period))
	_, _ = h.Write(b[:])
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// PlanDay plans a unit's kill on the work day of day: a coin with
// p = 1/mean decides whether there is one; heads picks a uniformly random
// minute of the window.
func PlanDay(c Config, seed uint64, service, unit string, meanDays float64, day time.Time) (Kill, bool) {
	if meanDays <= 0 || !c.WorkDay(day) {
		return Kill{}, false
	}
	start, end, err := c.Window.bounds()
	if err != nil {
		return Kill{}, false
	}
	d := day.In(c.location())
	midnight := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, d.Location())
	r := rng(seed, unit, int64(midnight.Year()*1000+midnight.YearDay()))
	if r.Float64() >= 1/meanDays {
		return Kill{}, false
	}
	minutes := int((end - start) / time.Minute)
	at := midnight.Add(start + time.Duration(r.IntN(minutes))*time.Minute)
	return Kill{Service: service, Unit: unit, At: at}, true
}

// FastPeriod is the "work day" of the fast mode: one second, every second.
const FastPeriod = time.Second

// PlanFast plans a unit's kill in the fast-mode period that starts at
// period: p = FastPeriod/mean, at a uniformly random instant of it.
func PlanFast(seed uint64, service, unit string, mean time.Duration, period time.Time) (Kill, bool) {
	if mean <= 0 {
		return Kill{}, false
	}
	r := rng(seed, unit, period.Unix())
	if r.Float64() >= float64(FastPeriod)/float64(mean) {
		return Kill{}, false
	}
	return Kill{Service: service, Unit: unit, At: period.Add(time.Duration(r.Int64N(int64(FastPeriod))))}, true
}

// MinGap is min_time_between_kills as a duration: work days count as 24 h.
func MinGap(k spec.KillInterval) time.Duration {
	if k.Every > 0 {
		return k.Every
	}
	return time.Duration(k.WorkDays * float64(24*time.Hour))
}

// Excepted reports whether group matches one of the spec's exceptions
// (path.Match patterns).
func Excepted(c spec.Chaos, group string) bool {
	for _, e := range c.Exceptions {
		if ok, _ := path.Match(e, group); ok {
			return true
		}
	}
	return false
}
