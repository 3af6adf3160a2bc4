package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

func (a *app) releaseCmd() *cobra.Command {
	var version, artifact, reason string
	var wait bool
	var waitFor time.Duration
	cmd := &cobra.Command{
		Use:   "release SERVICE --version V [--artifact …] [--wait]",
		Short: "Request a release of SERVICE; print its id; with --wait follow it to its end",
		Long: `Asks the team API (redblack.api.<team>.<user>.release.<SERVICE>) for a
release; the canary service publishes release.<SERVICE>.requested with
requested_by set to the caller's authenticated team/user. Prints the id.

--artifact is what the new version runs: for the local provider a command line
("./hello --version v2", split on spaces) or a JSON artifact
('{"command":["./hello","--version","v 2"]}'); for aws an AMI id (ami-…).
Without it the spec's default artifact is used.

Without --wait, waits for the intake's answer (at most a minute) and prints
it: exits 0 when the release is accepted, 1 when it is rejected (with the
reason), 2 when no answer comes. With --wait, follows the release live, one
line per phase with the time since the request, and exits 0 on completed, 1
on rolled_back or rejected, 2 when --timeout passes first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := args[0]
			if err := subjects.ValidateService(service); err != nil {
				return err
			}
			if version == "" {
				return fmt.Errorf(`required flag(s) "version" not set`)
			}
			art, err := parseArtifact(artifact)
			if err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			asked := time.Now()
			ans, err := c.request(service, api.ReleaseRequest{Version: version, Artifact: art, Reason: reason})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "release %s requested: %s %s (by %s)\n", ans.Release, service, version, ans.By)
			if !wait {
				return a.followIntake(c, service, ans.Release, ans.Seq, asked)
			}
			return a.follow(c, service, ans.Release, ans.Seq, asked, waitFor, events.ReleaseCompleted)
		},
	}
	cmd.AddCommand(a.abortCmd())
	cmd.Flags().StringVar(&version, "version", "", "the version to release (1-64 of [A-Za-z0-9._-])")
	cmd.Flags().StringVar(&artifact, "artifact", "", "what the version runs (see above); default: the spec's")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the release to its end")
	cmd.Flags().DurationVar(&waitFor, "timeout", 30*time.Minute, "with --wait, give up after this long")
	return cmd
}

// abortCmd ends a release by hand, from any phase.
func (a *app) abortCmd() *cobra.Command {
	var reason, service string
	var waitFor time.Duration
	cmd := &cobra.Command{
		Use:   "abort RELEASE --reason WHY",
		Short: "End a release by hand, from any phase, whatever is stuck; traffic stays on a group with instances",
		Long: `Asks the team API to abort; the canary service publishes
release.<service>.abort.requested with the caller's identity. The provisioner takes the canary's
share back (through the router), destroys the release's groups that have no
traffic, keeps the group that has it, records who ended the release and why,
frees the lock and emits release.<service>.aborted. Waits for that and exits 0;
1 if the release ended otherwise first; 2 when --timeout passes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := release.ValidateID(id); err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return fmt.Errorf("--reason: say why, for the audit trail")
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			asked := time.Now()
			if service == "" {
				if service, err = releaseService(c, id); err != nil {
					return err
				}
			}
			var ans api.Answer
			if err := c.call(api.VerbAbort, service, api.AbortRequest{Release: id, Reason: reason}, &ans); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "abort of %s (%s, %s) requested\n", id, service, ans.Phase)
			return a.follow(c, service, id, ans.Seq, asked, waitFor, events.ReleaseAborted)
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "the release's service (needed with a team's creds, which cannot read the releases bucket)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	cmd.Flags().DurationVar(&waitFor, "timeout", 2*time.Minute, "give up waiting after this long")
	return cmd
}

// releaseService reads which service a release is of, from the releases
// bucket.
func releaseService(c *client, id string) (string, error) {
	ctx, cancel := timeout(10 * time.Second)
	defer cancel()
	kv, err := c.kv(ctx, topology.BucketReleases)
	if err != nil {
		return "", fmt.Errorf("%w (with a team's creds, name the service: --service)", err)
	}
	rec, _, err := release.Store{KV: kv}.Get(ctx, id)
	if err != nil {
		return "", err
	}
	return rec.Service, nil
}

// parseArtifact reads --artifact: JSON, an AMI id, or a command line.
func parseArtifact(s string) (events.Artifact, error) {
	var a events.Artifact
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return a, nil
	case strings.HasPrefix(s, "{"):
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			return a, fmt.Errorf("--artifact: %w", err)
		}
	case strings.HasPrefix(s, "ami-"):
		a.AMI = s
	default:
		a.Command = strings.Fields(s)
	}
	return a, nil
}

// intakeWait bounds release's wait for the intake's answer without --wait:
// longer than a leader election, which can hold the intake up.
const intakeWait = time.Minute

// followIntake prints the intake's answer to the release asked for: exit 0
// if it is accepted, 1 if rejected, 2 if no answer comes within intakeWait.
func (a *app) followIntake(c *client, service, id string, seq uint64, requested time.Time) error {
	err := a.followUntil(c, service, id, seq, requested, intakeWait, func(ev events.Event) (bool, error) {
		switch ev.Type {
		case events.ReleaseAccepted.Type():
			return true, nil
		case events.ReleaseRejected.Type():
			return true, exitCode{code: 1, msg: "release " + id + " rejected"}
		}
		return false, nil
	})
	var ec exitCode
	if errors.As(err, &ec) && ec.code == 2 {
		return exitCode{code: 2, msg: fmt.Sprintf("release %s: no answer from the intake within %s (redblack events --release %s)", id, intakeWait, id)}
	}
	return err
}

// follow prints the release's events from seq on until it ends: exit 0 if
// it ends with success (completed for a release, rolled_back for a
// rollback), 1 if it ends otherwise, 2 if limit passes first.
func (a *app) follow(c *client, service, id string, seq uint64, requested time.Time, limit time.Duration, success events.Kind) error {
	return a.followUntil(c, service, id, seq, requested, limit, func(ev events.Event) (bool, error) {
		switch ev.Type {
		case success.Type():
			return true, nil
		case events.ReleaseCompleted.Type(), events.ReleaseRejected.Type(), events.RolledBack.Type(), events.ReleaseAborted.Type():
			return true, exitCode{code: 1, msg: "release " + id + " " + strings.TrimPrefix(shortType(ev.Type), "release.")}
		}
		return false, nil
	})
}

// followUntil prints the release's events from seq on, one line each with
// the time since the request, until end says to stop (with the outcome to
// return); exit 2 if limit passes first.
func (a *app) followUntil(c *client, service, id string, seq uint64, requested time.Time, limit time.Duration, end func(events.Event) (bool, error)) error {
	ctx, cancel := timeout(limit)
	defer cancel()
	var outcome error
	err := c.tail(ctx, topology.StreamReleases, []string{subjects.AllReleases(service)}, from{seq: seq}, true, func(s seen) error {
		if s.bad != nil || s.ev.ReleaseID != id {
			return nil
		}
		elapsed := s.ev.Time.Sub(requested).Round(time.Millisecond)
		fmt.Fprintf(a.out, "%+9.3fs  %-20s %s\n", elapsed.Seconds(), shortType(s.ev.Type), describe(s.ev))
		stop, out := end(s.ev)
		if stop {
			outcome = out
			return errStop
		}
		return nil
	})
	if ctx.Err() != nil {
		return exitCode{code: 2, msg: fmt.Sprintf("release %s did not end within %s (redblack status %s)", id, limit, service)}
	}
	if err != nil {
		return err
	}
	return outcome
}
