package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/logging"
)

// Entry is one bench of `redblack bench`: its name and help, its flags,
// and how it runs. A new bench is a file of this package with a function
// that returns its Entry, listed in Entries.
type Entry struct {
	Name, Short, Long string
	// Hidden keeps it out of the help (a helper another bench runs).
	Hidden bool
	// MinArgs is how many arguments it takes at least (0: none at all).
	MinArgs int
	// Flags declares its flags (nil: none).
	Flags func(*pflag.FlagSet)
	// Examples it needs built into a temp dir (Env.Work) before it runs.
	Examples Examples
	// Run measures and prints the figures beside their targets.
	Run func(ctx context.Context, env Env, args []string) error
}

// Entries is the table of `redblack bench`, in the order of its help.
func Entries() []Entry {
	return []Entry{backboneBench(), fleetBench(), routerBench(), forwarderBench(), switchBench(), judgeBench(),
		rollbackBench(), rollingBench(), chaosBench(), crashBench(), ghostsBench(), clusterBench()}
}

// Examples are the example programs a bench needs.
type Examples int

// The example programs a bench can ask for.
const (
	NoExamples Examples = iota
	Hello
	HelloAndStore
)

// Env is what a bench runs with.
type Env struct {
	// Out takes the figures, Err the progress.
	Out, Err io.Writer
	// Self is this executable: the benches that run `redblack up` (or the
	// router) as a process start it.
	Self string
	// Work is the temp dir with the examples the entry asked for (nil
	// when it asked for none).
	Work *Workdir
}

// Execute runs the entry with its setup: the examples it needs built into
// a temp dir, removed when it returns.
func (e Entry) Execute(ctx context.Context, env Env, args []string) error {
	if e.Examples != NoExamples {
		w, err := NewWorkdir(e.Examples == HelloAndStore)
		if err != nil {
			return err
		}
		defer w.Close()
		env.Work = w
	}
	return e.Run(ctx, env, args)
}

// Progress prints a line of progress.
func (e Env) Progress(s string) { fmt.Fprintln(e.Err, s) }

// Log is the services' log of an in-process mesh: errors only unless
// REDBLACK_BENCH_LOG names a level.
func (e Env) Log() zerolog.Logger {
	level := os.Getenv("REDBLACK_BENCH_LOG")
	if level == "" {
		level = "error"
	}
	return logging.New(e.Err, "", level)
}

// Workdir is the benches' one setup: a temp dir with the example programs
// built into it. Close removes it.
type Workdir struct {
	Dir, Hello string
	// Store is examples/store, when asked for.
	Store string
}

// NewWorkdir makes the temp dir and builds hello into it (and store, with
// withStore).
func NewWorkdir(withStore bool) (*Workdir, error) {
	dir, err := os.MkdirTemp("", "redblack-bench-")
	if err != nil {
		return nil, err
	}
	w := &Workdir{Dir: dir}
	if w.Hello, err = BuildHello(dir); err == nil && withStore {
		w.Store, err = BuildStore(dir)
	}
	if err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Path is name inside the dir.
func (w *Workdir) Path(name string) string { return filepath.Join(w.Dir, name) }

// Close removes the dir.
func (w *Workdir) Close() { os.RemoveAll(w.Dir) }

// Mesh starts the mesh from cfg in the dir with a 3-instance hello group
// per name and switches all traffic to the first; Stop it before Close.
func (w *Workdir) Mesh(cfg mesh.Config, groups ...string) (*Mesh, error) {
	bm, err := StartMeshWith(cfg, w.Path("mesh"), w.Hello, 3, groups...)
	if err != nil {
		return nil, err
	}
	if err := bm.Switch(groups[0]); err != nil {
		bm.Stop()
		return nil, err
	}
	return bm, nil
}

// table is how a bench prints a table: text/tabwriter, so that columns
// line up whatever the widths (Flush prints it).
func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// row prints one row of a figure table.
func row(tw io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, c)
	}
	fmt.Fprintln(tw)
}
