package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/subjects"
)

func (a *app) rollbackCmd() *cobra.Command {
	var reason string
	var wait bool
	var waitFor time.Duration
	cmd := &cobra.Command{
		Use:   "rollback SERVICE [--reason …] [--wait]",
		Short: "Roll SERVICE back: the release in flight, or the last completed one while its previous group is kept",
		Long: `Asks the team API for a rollback; the canary service publishes
release.<SERVICE>.rollback.requested, with the caller's identity, for the release in flight, at
whatever phase it is: a canary is stopped, a new group is destroyed, and after
the switch all traffic goes back to the previous group first.

With no release in flight, rolls back the last completed release (the one
whose group has the traffic, also after later releases failed or were
aborted) if the group it replaced is still kept with instances up
(strategy.keep_previous): traffic switches back to it at once and the newer
group is destroyed. When there is nothing to go back to, it says which groups
exist and what to do instead.

With --wait, follows the rollback to rolled_back.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := args[0]
			if err := subjects.ValidateService(service); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			asked := time.Now()
			var ans api.Answer
			if err := c.call(api.VerbRollback, service, api.Reason{Reason: reason}, &ans); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "rollback of release %s (%s %s, %s) requested by %s\n", ans.Release, service, ans.Version, ans.Phase, ans.By)
			if !wait {
				return nil
			}
			return a.follow(c, service, ans.Release, ans.Seq, asked, waitFor, events.RolledBack)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the rollback to its end")
	cmd.Flags().DurationVar(&waitFor, "timeout", 5*time.Minute, "with --wait, give up after this long")
	return cmd
}
