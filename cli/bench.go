package cli

import (
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/bench"
)

// benchCmd is `redblack bench`: one subcommand per entry of bench's table,
// and the tiers bench, whose scenario is the tiers demo's.
func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure redblack and print the figures beside their targets"}
	for _, e := range append(bench.Entries(), a.tiersBench()) {
		sub := &cobra.Command{Use: e.Name, Short: e.Short, Long: e.Long, Hidden: e.Hidden, Args: cobra.NoArgs}
		if e.MinArgs > 0 {
			sub.Args = cobra.MinimumNArgs(e.MinArgs)
		}
		if e.Flags != nil {
			e.Flags(sub.Flags())
		}
		sub.RunE = func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			return e.Execute(cmd.Context(), bench.Env{Out: a.out, Err: a.err, Self: self}, args)
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

// newTable is how the CLI prints a table: text/tabwriter, so that columns
// line up whatever the widths (Flush prints it).
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }
