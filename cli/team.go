package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/natsx"
)

// teamCmd manages teams through up's admin endpoints (admin creds only).
func (a *app) teamCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "team", Short: "Teams: issue, list and revoke their NATS credentials (admin creds)"}
	var services, out, user string
	var audit bool
	add := &cobra.Command{
		Use:   "add TEAM --services a,b [--user NAME] [--out FILE] | add NAME --audit",
		Short: "Issue a creds file for a user of TEAM, limited to its services (or a read-only auditor)",
		Long: `Asks redblack up (redblack.admin.team-add) for a new user of TEAM and writes its
creds file, usable with nats --creds FILE and redblack --creds FILE.

A team user may ask the team API to release, roll back, abort, calibrate, and
get or apply the specs of its own services, and read their events on RELEASES
and FLEET; nothing else. Its requests carry its identity (TEAM/USER) in
requested_by. With --audit, NAME is a read-only auditor that can read every
stream and bucket.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := mesh.TeamAdd{Team: args[0], User: user, Audit: audit}
			if audit {
				req.User, req.Team = args[0], ""
			} else if services == "" {
				return fmt.Errorf("--services: name the team's services (a,b)")
			} else {
				req.Services = strings.Split(services, ",")
				if req.User == "" {
					req.User = args[0]
				}
			}
			var creds mesh.Creds
			if err := a.admin("team-add", req, &creds); err != nil {
				return err
			}
			if out == "" {
				out = strings.ReplaceAll(creds.Identity, "/", "-") + ".creds"
			}
			if err := os.WriteFile(out, []byte(creds.Creds), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%s: creds written to %s (nats --creds %s)\n", creds.Identity, out, out)
			return nil
		},
	}
	add.Flags().StringVar(&services, "services", "", "the team's services, comma-separated")
	add.Flags().StringVar(&user, "user", "", "the user's name (default: the team's)")
	add.Flags().StringVar(&out, "out", "", "where to write the creds (default TEAM-USER.creds, mode 0600)")
	add.Flags().BoolVar(&audit, "audit", false, "issue a read-only auditor instead")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the teams, their services and users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var teams []auth.Team
			if err := a.admin("team-ls", nil, &teams); err != nil {
				return err
			}
			tw := newTable(a.out)
			fmt.Fprintln(tw, "TEAM\tSERVICES\tUSERS\tSTATE")
			for _, t := range teams {
				names := make([]string, len(t.Users))
				for i, u := range t.Users {
					names[i] = u.Name
				}
				state := "active"
				if !t.Revoked.IsZero() {
					state = "revoked " + t.Revoked.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, strings.Join(t.Services, ","), strings.Join(names, ","), state)
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke TEAM",
		Short: "Revoke every user of TEAM: their connections close and their creds stop working",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r mesh.Revoked
			if err := a.admin("team-revoke", mesh.TeamName{Team: args[0]}, &r); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "team %s revoked: %d user(s)\n", r.Team, r.Users)
			return nil
		},
	}
	cmd.AddCommand(add, ls, revoke)
	return cmd
}

// admin calls one of up's admin endpoints.
func (a *app) admin(endpoint string, body, out any) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.close()
	b, _ := json.Marshal(body)
	msg, err := c.nc.Request(natsx.EndpointSubject("admin", endpoint), b, 10*time.Second)
	if err != nil {
		return fmt.Errorf("%s: %w (this needs the admin creds of a running redblack up)", endpoint, err)
	}
	if e := msg.Header.Get("Nats-Service-Error"); e != "" {
		return fmt.Errorf("%s: %s", endpoint, e)
	}
	return json.Unmarshal(msg.Data, out)
}
