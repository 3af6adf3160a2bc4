package mesh

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/natsx"
)

// TeamAdd is the body of redblack.admin.team-add.
type TeamAdd struct {
	Team     string   `json:"team"`
	User     string   `json:"user"`
	Services []string `json:"services"`
	// Audit asks for a read-only auditor named User instead of a team user.
	Audit bool `json:"audit,omitempty"`
}

// TeamName is the body of redblack.admin.team-revoke.
type TeamName struct {
	Team string `json:"team"`
}

// Creds answers team-add: the new user's creds file.
type Creds struct {
	Identity string `json:"identity"`
	Creds    string `json:"creds"`
}

// Revoked answers team-revoke.
type Revoked struct {
	Team  string `json:"team"`
	Users int    `json:"users"`
}

// Teams is the authority the admin endpoints issue and revoke users with
// (*auth.Authority).
type Teams interface {
	AddTeam(team, user string, services []string) ([]byte, error)
	Auditor(user string) ([]byte, error)
	Teams() []auth.Team
	RevokeTeam(team string) (int, error)
}

// ServeTeams serves the admin endpoints (redblack.admin.team-add, team-ls,
// team-revoke) on up's own connection: only the admin may publish there,
// and only up's process holds the account key. revoked, if set, is called
// after a revocation, to take it to servers the authority does not hold
// (up --nodes: every node); its error is the endpoint's.
func ServeTeams(ctx context.Context, nc *nats.Conn, teams Teams, log zerolog.Logger, revoked func() error) error {
	decode := api.DecodeBody
	svc, err := natsx.AddMicro(nc, natsx.MicroConfig{
		Name: "admin", Version: "0.1.0", Description: "teams and their credentials", Log: log,
		Status: func() any { return natsx.Status{Service: "admin", Parts: map[string]string{"teams": "running"}} },
		Endpoints: map[string]natsx.Endpoint{
			"team-add": func(b []byte) (any, error) {
				var req TeamAdd
				if err := decode(b, &req); err != nil {
					return nil, err
				}
				var creds []byte
				var err error
				id := auth.Identity{Team: req.Team, User: req.User}
				if req.Audit {
					id.Team = auth.TeamAudit
					creds, err = teams.Auditor(req.User)
				} else {
					creds, err = teams.AddTeam(req.Team, req.User, req.Services)
				}
				if err != nil {
					return nil, err
				}
				log.Info().Str("identity", id.String()).Strs("services", req.Services).Msg("user issued")
				return Creds{Identity: id.String(), Creds: string(creds)}, nil
			},
			"team-ls": func([]byte) (any, error) { return teams.Teams(), nil },
			"team-revoke": func(b []byte) (any, error) {
				var req TeamName
				if err := decode(b, &req); err != nil {
					return nil, err
				}
				n, err := teams.RevokeTeam(req.Team)
				if err != nil {
					return nil, err
				}
				if revoked != nil {
					if err := revoked(); err != nil {
						return nil, fmt.Errorf("team %s revoked in the registry, but not yet on every server: %w (revoke it again)", req.Team, err)
					}
				}
				log.Info().Str("team", req.Team).Int("users", n).Msg("team revoked")
				return Revoked{Team: req.Team, Users: n}, nil
			},
		},
	})
	if err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	go func() {
		<-ctx.Done()
		_ = svc.Stop()
	}()
	return nil
}
