package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/subjects"
)

func (a *app) fleetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "fleet", Short: "Server groups and instances: list, create, scale, destroy"}
	var lsJSON bool
	ls := &cobra.Command{
		Use:   "ls [SERVICE] [--json]",
		Short: "List server groups and their instances with state, address and age",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := ""
			if len(args) == 1 {
				service = args[0]
				if err := subjects.ValidateService(service); err != nil {
					return err
				}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			resp, err := c.nc.Request(natsx.EndpointSubject("provisioner", "list"), []byte(service), 5*time.Second)
			if err != nil {
				return fmt.Errorf("ask the provisioner: %w", err)
			}
			groups := []fleet.Group{}
			if err := json.Unmarshal(resp.Data, &groups); err != nil {
				return fmt.Errorf("provisioner answered %q: %w", resp.Data, err)
			}
			ctx, cancel := timeout(10 * time.Second)
			defer cancel()
			roles, err := fleetRoles(ctx, c, groups)
			if err != nil {
				return err
			}
			if lsJSON {
				out := make([]groupWithRole, len(groups))
				for i, g := range groups {
					out[i] = groupWithRole{g, roles[i]}
				}
				return printJSON(a.out, out)
			}
			tw := newTable(a.out)
			fmt.Fprintln(tw, "GROUP\tVERSION\tROLE\tUP/DESIRED\tINSTANCE\tSTATE\tADDRESS\tAGE")
			for gi, g := range groups {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t\t\t\t%s\n", g.Spec.Group, g.Spec.Version, roles[gi], g.Up(), g.Desired, age(g.Created))
				for _, i := range g.Instances {
					fmt.Fprintf(tw, "\t\t\t\t%s\t%s\t%s\t%s\n", i.ID, i.State, i.Address, age(i.Started))
				}
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVar(&lsJSON, "json", false, "print JSON (the provisioner's groups with their instances, and each group's role)")
	var version, artifact string
	create := &cobra.Command{
		Use:   "create GROUP N [--version V] [--artifact …]",
		Short: "Create a server group of N instances by hand (releases do this for you)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			art, err := parseArtifact(artifact)
			if err != nil {
				return err
			}
			return a.groupCommand(events.ServerGroupCreate, args[0], args[1], func(c *events.ServerGroupCommand) {
				c.Version, c.Artifact = version, art
			})
		},
	}
	create.Flags().StringVar(&version, "version", "", "the version the group runs")
	create.Flags().StringVar(&artifact, "artifact", "", "what it runs; default: the spec's")
	scale := &cobra.Command{
		Use:   "scale GROUP N",
		Short: "Set a server group's desired capacity",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.groupCommand(events.ServerGroupResize, args[0], args[1], nil)
		},
	}
	destroy := &cobra.Command{
		Use:   "destroy GROUP",
		Short: "Destroy a server group (its instances get SIGTERM, then SIGKILL)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.groupCommand(events.ServerGroupDestroy, args[0], "", nil)
		},
	}
	cmd.AddCommand(ls, create, scale, destroy)
	return cmd
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}

// groupCommand publishes a servergroup command and waits for its outcome.
func (a *app) groupCommand(k events.Kind, group, n string, edit func(*events.ServerGroupCommand)) error {
	service, _, role, err := release.ParseGroup(group)
	if err != nil {
		return err
	}
	capacity := 0
	if n != "" {
		if capacity, err = strconv.Atoi(n); err != nil {
			return fmt.Errorf("capacity %q is not a number", n)
		}
	}
	cmd := events.ServerGroupCommand{Service: service, Group: group, Capacity: capacity, Role: role}
	if edit != nil {
		edit(&cmd)
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.close()
	ev, err := events.New("redblack/cli", k, service, "", cmd)
	if err != nil {
		return err
	}
	ctx, cancel := timeout(10 * time.Second)
	defer cancel()
	ack, err := natsx.Publish(ctx, c.js, k.Subject(service), ev)
	if err != nil {
		return err
	}
	want := map[string]bool{
		events.ServerGroupCreated.Type(): k == events.ServerGroupCreate, events.ServerGroupResized.Type(): k == events.ServerGroupResize,
		events.ServerGroupDestroyed.Type(): k == events.ServerGroupDestroy, events.ServerGroupFailed.Type(): true,
	}
	var outcome error
	err = c.tail(ctx, "FLEET", []string{subjects.AllFleet(service)}, from{seq: ack.Sequence}, true, func(s seen) error {
		if s.bad != nil || !want[s.ev.Type] || !strings.HasPrefix(s.ev.ID, ev.ID) {
			return nil
		}
		fmt.Fprintf(a.out, "%s %s\n", shortType(s.ev.Type), describe(s.ev))
		if s.ev.Type == events.ServerGroupFailed.Type() {
			outcome = exitCode{code: 1}
		}
		return errStop
	})
	if ctx.Err() != nil {
		return fmt.Errorf("no answer from the provisioner in 10s (is it running?)")
	}
	if err != nil {
		return err
	}
	return outcome
}
