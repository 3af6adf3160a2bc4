package cli

import (
	"errors"
	"io"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
)

func (a *app) analysisCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "analysis",
		Short: "Apply and get analysis templates: a team's own metrics (Prometheus, web JSON) for the canary judge",
		Long: `An analysis template is a named set of metrics read from a provider —
prometheus (a PromQL query) or web (an HTTP endpoint answering JSON, with a
JSONPath) — that a service's spec names in strategy.analysis. The canary
judges them beside the router's metrics, on the same budget, and never passes
a metric it could not read (unless the metric is optional). See the README's
"Your own metrics".`,
	}
	var file, team string
	apply := &cobra.Command{
		Use:   "apply -f FILE.yaml",
		Short: "Validate a template and store it through the team API (prints created, updated or unchanged)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.applyFile("analysis template", subjects.VerbAnalysisApply, file, func(r io.Reader) (string, any, error) {
				t, err := analysis.Parse(r)
				var ve *spec.ValidationError
				if errors.As(err, &ve) && t.Owner == "" && len(ve.Fields) == 1 && ve.Fields[0].Field == "owner" {
					err = nil // the API names the caller's team
				}
				return t.Name, t, err
			})
		},
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "the template file (YAML), - for standard input")
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Print one of your team's templates as YAML",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			var t analysis.Template
			if err := c.call(subjects.VerbAnalysisGet, args[0], api.AnalysisGet{Owner: team}, &t); err != nil {
				return err
			}
			return yaml.NewEncoder(a.out).Encode(t)
		},
	}
	get.Flags().StringVar(&team, "team", "", "the team whose template to read (the admin only; default your own)")
	cmd.AddCommand(apply, get)
	return cmd
}
