// Package logging sets up zerolog the same way in every service: JSON lines
// by default, console-pretty when the output is a terminal.
package logging

import (
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Field names every line about a release carries.
const (
	FieldService     = "service"
	FieldRelease     = "release"
	FieldServerGroup = "server_group"
	FieldComponent   = "component"
)

// New returns a logger writing to w for one component ("canary", "router",
// …; "" when a caller adds it per line) at the given level ("debug", "info", "warn", "error"; "" is info).
// When w is a terminal the output is console-pretty, otherwise JSON.
func New(w io.Writer, component, level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: f, TimeFormat: time.TimeOnly}
	}
	ctx := zerolog.New(w).Level(lvl).With().Timestamp()
	if component != "" {
		ctx = ctx.Str(FieldComponent, component)
	}
	return ctx.Logger()
}

// Nop is a logger that writes nothing.
func Nop() zerolog.Logger { return zerolog.Nop() }
