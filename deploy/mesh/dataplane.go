package mesh

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redblack/redblack/deploy/supervise"
)

// DataPlane runs the router as its own process, outside the mesh's: `EXE
// run router`, supervised (restarted with back-off when it dies) and left
// running when the mesh's process dies, for the next Start with the same
// DataDir to adopt. The data plane then serves through a SIGKILL or a
// restart of `up` from its last routing tables.
type DataPlane struct {
	// Exe is the redblack executable (its `run router` is the router's own
	// binary).
	Exe string
	// Admin is the router process's admin address: /metrics and /healthz
	// ("" for none).
	Admin string
	// Args are more flags for the router (the aws edge's).
	Args []string
	// Env adds to the router's environment (GOMAXPROCS=1, say).
	Env []string
	// LogLevel is the router's log level (default info); its log goes to
	// <data>/logs/router.log.
	LogLevel string
}

// DataPlaneName is the data plane's name under the mesh's supervisor.
const DataPlaneName = "router"

// FreeAddr is addr, or with port 0 a port free now.
func FreeAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startDataPlane starts the router process, or adopts the one a previous
// mesh left with the same arguments (same NATS URL, HTTP and admin
// addresses); a port 0 is a new free port each time, so such a data plane
// is replaced rather than adopted.
func (m *Mesh) startDataPlane(cfg Config, creds string) error {
	dp := cfg.DataPlane
	data, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	if m.http, err = FreeAddr(cfg.Router.HTTP); err != nil {
		return fmt.Errorf("mesh: data plane --http %w", err)
	}
	admin := dp.Admin
	if admin != "" {
		if admin, err = FreeAddr(admin); err != nil {
			return fmt.Errorf("mesh: data plane admin %w", err)
		}
	}
	m.dataPlaneAdmin = admin
	level := dp.LogLevel
	if level == "" {
		level = "info"
	}
	// --exit-without: a data plane whose up and data directory are gone
	// stops (draining) instead of serving stale tables for ever
	args := []string{"run", "router", "--server", m.URL(), "--creds", creds, "--log-level", level,
		"--http", m.http, "--admin", admin, "--metrics-interval", cfg.Router.MetricsInterval.String(), "--exit-without", data}
	if n := cfg.Router.Proxy.MaxConnsPerClient; n != 0 {
		args = append(args, "--max-conns-per-client", strconv.Itoa(n))
	}
	args = append(args, dp.Args...)
	var env []string // nil: this process's
	if len(dp.Env) > 0 {
		env = append(os.Environ(), dp.Env...)
	}
	m.sup = supervise.New(m.log)
	return m.sup.Start(supervise.Spec{Name: DataPlaneName, Path: dp.Exe, Args: args, Env: env,
		State: filepath.Join(data, "dataplane.json"), Log: filepath.Join(data, "logs", "router.log")})
}

// DataPlanePid is the router process's pid (0 when the router runs in the
// mesh's process).
func (m *Mesh) DataPlanePid() int {
	if m.sup == nil {
		return 0
	}
	return m.sup.Pid(DataPlaneName)
}

// DataPlaneAdopted reports whether the router process was left by a
// previous mesh and adopted by this one.
func (m *Mesh) DataPlaneAdopted() bool {
	return m.sup != nil && m.sup.Adopted(DataPlaneName)
}

// DataPlaneAdmin is the router process's admin address ("" for none, or
// when the router runs in the mesh's process).
func (m *Mesh) DataPlaneAdmin() string { return m.dataPlaneAdmin }

// stopDataPlane stops the router process, or with keep leaves it running
// for the next mesh to adopt (as the instances are with KeepInstances).
func (m *Mesh) stopDataPlane(keep bool) {
	if m.sup == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if keep {
		m.sup.Leave(ctx, 10*time.Second)
		return
	}
	m.sup.Stop(ctx, 10*time.Second)
}
