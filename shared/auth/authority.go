// Package auth is redblack's security model on NATS: operator mode with
// JWTs and nkeys. An Authority holds the operator, system and account keys
// under <data>/creds (0600), configures the embedded server to trust only
// them, and issues users: one per service with only the subjects it needs,
// an admin, read-only auditors, and team users limited to their own
// services. Revoking a team updates the account's revocation list on the
// running server, which closes the team's connections.
package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/redblack/redblack/shared/subjects"
)

// Reserved team names: they name the mesh's own users, never a team.
const (
	TeamAdmin    = "admin"
	TeamAudit    = "audit"
	TeamRedblack = "redblack" // the five services
)

// AccountName is the name of the account every redblack user belongs to.
const AccountName = "REDBLACK"

// ErrTeam is returned for a team request that cannot be honoured.
var ErrTeam = errors.New("auth: team")

// Team is a team as the registry keeps it.
type Team struct {
	Name     string   `json:"name"`
	Services []string `json:"services"`
	Users    []User   `json:"users"`
	// Revoked is when the team's users were revoked (zero if never).
	Revoked time.Time `json:"revoked,omitzero"`
}

// User is one issued team user.
type User struct {
	Name   string    `json:"name"`
	Key    string    `json:"key"` // the user's public nkey
	Issued time.Time `json:"issued"`
	// Revoked is when the user was revoked (zero if it was not).
	Revoked time.Time `json:"revoked,omitzero"`
}

// Authority holds the keys and the team registry of one data directory.
type Authority struct {
	dir                       string
	operator, system, account nkeys.KeyPair
	opPub, sysPub, accPub     string
	mu                        sync.Mutex
	teams                     map[string]*Team
	revocations               map[string]int64 // user key → unix seconds
	resolver                  *server.MemAccResolver
	srv                       *server.Server
}

// Open loads the keys under dir, creating them (0600, in a 0700 directory)
// on first use, and the team registry.
func Open(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	a := &Authority{dir: dir, teams: map[string]*Team{}, revocations: map[string]int64{}}
	var err error
	if a.operator, err = loadKey(filepath.Join(dir, "operator.nk"), nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.system, err = loadKey(filepath.Join(dir, "system.nk"), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.account, err = loadKey(filepath.Join(dir, "account.nk"), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	a.opPub, _ = a.operator.PublicKey()
	a.sysPub, _ = a.system.PublicKey()
	a.accPub, _ = a.account.PublicKey()
	if b, err := os.ReadFile(a.registryPath()); err == nil {
		var teams []*Team
		if err := json.Unmarshal(b, &teams); err != nil {
			return nil, fmt.Errorf("auth: %s: %w", a.registryPath(), err)
		}
		for _, t := range teams {
			a.teams[t.Name] = t
			for _, u := range t.Users {
				if !u.Revoked.IsZero() {
					a.revocations[u.Key] = u.Revoked.Unix()
				}
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return a, nil
}

func loadKey(path string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	if seed, err := os.ReadFile(path); err == nil {
		kp, err := nkeys.FromSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("auth: %s: %w", path, err)
		}
		return kp, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("auth: %w", err)
	}
	kp, err := create()
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	seed, _ := kp.Seed()
	if err := writeFile(path, seed); err != nil {
		return nil, err
	}
	return kp, nil
}

// writeFile writes b to path with mode 0600, atomically.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}

// Dir is the directory of the keys and creds files.
func (a *Authority) Dir() string { return a.dir }

func (a *Authority) registryPath() string { return filepath.Join(a.dir, "teams.json") }

// accountJWT encodes the account: JetStream without limits, and the
// revocations of every revoked team user.
func (a *Authority) accountJWT() (string, error) {
	ac := jwt.NewAccountClaims(a.accPub)
	ac.Name = AccountName
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1, MaxAckPending: -1, MemoryMaxStreamBytes: -1, DiskMaxStreamBytes: -1}
	if len(a.revocations) > 0 {
		ac.Revocations = jwt.RevocationList{}
		for key, at := range a.revocations {
			ac.Revocations.Revoke(key, time.Unix(at, 0))
		}
	}
	return ac.Encode(a.operator)
}

// jwts encodes the operator and the system and redblack accounts.
func (a *Authority) jwts() (oc *jwt.OperatorClaims, opJWT, sysJWT, accJWT string, err error) {
	oc = jwt.NewOperatorClaims(a.opPub)
	oc.Name = "redblack"
	oc.SystemAccount = a.sysPub
	if opJWT, err = oc.Encode(a.operator); err != nil {
		return nil, "", "", "", fmt.Errorf("auth: operator: %w", err)
	}
	sc := jwt.NewAccountClaims(a.sysPub)
	sc.Name = "SYS"
	if sysJWT, err = sc.Encode(a.operator); err != nil {
		return nil, "", "", "", fmt.Errorf("auth: system account: %w", err)
	}
	a.mu.Lock()
	accJWT, err = a.accountJWT()
	a.mu.Unlock()
	if err != nil {
		return nil, "", "", "", fmt.Errorf("auth: account: %w", err)
	}
	return oc, opJWT, sysJWT, accJWT, nil
}

// ServerConfig is the authority as a stock nats-server's configuration:
// operator mode trusting this operator only, with the system and redblack
// accounts preloaded in a memory resolver; a node's configuration includes
// it. A team revocation takes effect on a node when this is written again
// and the node reloads (nats-server --signal reload).
func (a *Authority) ServerConfig() (string, error) {
	_, opJWT, sysJWT, accJWT, err := a.jwts()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("# redblack's operator and accounts: written by `redblack nats config`\n"+
		"operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n",
		opJWT, a.sysPub, a.sysPub, sysJWT, a.accPub, accJWT), nil
}

// ServerOptions puts the server in operator mode: it trusts this
// authority's operator only, resolves the system and redblack accounts from
// memory, and so refuses every connection without a user JWT it signed.
func (a *Authority) ServerOptions(opts *server.Options) error {
	oc, _, sysJWT, accJWT, err := a.jwts()
	if err != nil {
		return err
	}
	a.resolver = &server.MemAccResolver{}
	_ = a.resolver.Store(a.sysPub, sysJWT)
	_ = a.resolver.Store(a.accPub, accJWT)
	opts.TrustedOperators = []*jwt.OperatorClaims{oc}
	opts.SystemAccount = a.sysPub
	opts.AccountResolver = a.resolver
	return nil
}

// Attach gives the authority the running server, so that revocations take
// effect at once.
func (a *Authority) Attach(srv *server.Server) {
	a.mu.Lock()
	a.srv = srv
	a.mu.Unlock()
}

// Identity is who a user is: a team (or a reserved name) and a user.
type Identity struct {
	Team string
	User string
}

// String is "team/user", the form of requested_by.
func (id Identity) String() string { return id.Team + "/" + id.User }

// InboxPrefix is the only inbox prefix the user may subscribe under.
func (id Identity) InboxPrefix() string { return "_INBOX." + id.Team + "." + id.User }

// issue signs a user JWT for id with perms and returns the creds file.
func (a *Authority) issue(id Identity, perms jwt.Permissions) (creds []byte, key string, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, "", fmt.Errorf("auth: %w", err)
	}
	key, _ = kp.PublicKey()
	uc := jwt.NewUserClaims(key)
	uc.Name = id.Team + "." + id.User
	uc.Permissions = perms
	token, err := uc.Encode(a.account)
	if err != nil {
		return nil, "", fmt.Errorf("auth: sign %s: %w", id, err)
	}
	seed, _ := kp.Seed()
	creds, err = jwt.FormatUserConfig(token, seed)
	if err != nil {
		return nil, "", fmt.Errorf("auth: %w", err)
	}
	return creds, key, nil
}

// Admin issues the admin user: every subject of the account but the
// samples' (AdminPermissions).
func (a *Authority) Admin(user string) ([]byte, error) {
	c, _, err := a.issue(Identity{TeamAdmin, user}, AdminPermissions())
	return c, err
}

// Service issues the user of one of the five services, with only the
// subjects that service needs (Permissions).
func (a *Authority) Service(name string) ([]byte, error) {
	perms, err := ServicePermissions(name)
	if err != nil {
		return nil, err
	}
	c, _, err := a.issue(Identity{TeamRedblack, name}, perms)
	return c, err
}

// Caller issues the user of the discovery client in the instances of
// service, which call the downstream services (CallerPermissions). Its
// identity is redblack/caller-<service>.
func (a *Authority) Caller(service string, downstream []string) ([]byte, error) {
	for _, s := range append([]string{service}, downstream...) {
		if err := subjects.ValidateService(s); err != nil {
			return nil, fmt.Errorf("auth: caller: %w", err)
		}
	}
	id := Identity{TeamRedblack, subjects.CallerPublisher(service)}
	c, _, err := a.issue(id, CallerPermissions(id, downstream))
	return c, err
}

// Auditor issues a read-only user that can read every stream and bucket.
func (a *Authority) Auditor(user string) ([]byte, error) {
	if err := subjects.ValidateService(user); err != nil {
		return nil, fmt.Errorf("%w: user: %v", ErrTeam, err)
	}
	id := Identity{TeamAudit, user}
	c, _, err := a.issue(id, AuditorPermissions(id))
	return c, err
}

// WriteCreds writes creds to <dir>/<name>.creds (0600) and returns the path.
func (a *Authority) WriteCreds(name string, creds []byte) (string, error) {
	path := filepath.Join(a.dir, name+".creds")
	return path, writeFile(path, creds)
}

// AddTeam issues a new user of team for services. A team's services are
// fixed when it is first added: adding it again with other services is
// refused (revoke it first). A revoked team added again starts afresh.
func (a *Authority) AddTeam(team, user string, services []string) ([]byte, error) {
	if err := validName("team", team); err != nil {
		return nil, err
	}
	if err := validName("user", user); err != nil {
		return nil, err
	}
	if len(services) == 0 {
		return nil, fmt.Errorf("%w: --services: name at least one service", ErrTeam)
	}
	services = slices.Clone(services)
	for _, s := range services {
		if err := subjects.ValidateService(s); err != nil {
			return nil, fmt.Errorf("%w: services: %v", ErrTeam, err)
		}
	}
	sort.Strings(services)
	services = slices.Compact(services)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, other := range a.teams {
		if other.Name == team || !other.Revoked.IsZero() {
			continue
		}
		for _, s := range services {
			if slices.Contains(other.Services, s) {
				return nil, fmt.Errorf("%w: service %s is owned by team %s", ErrTeam, s, other.Name)
			}
		}
	}
	t := a.teams[team]
	switch {
	case t == nil:
		t = &Team{Name: team, Services: services}
	case !t.Revoked.IsZero():
		// revoked: its old users stay revoked, the team starts afresh
		t = &Team{Name: team, Services: services, Users: t.Users}
	case !slices.Equal(t.Services, services):
		return nil, fmt.Errorf("%w: team %s owns %v; revoke it to change its services", ErrTeam, team, t.Services)
	}
	id := Identity{team, user}
	creds, key, err := a.issue(id, TeamPermissions(id, services))
	if err != nil {
		return nil, err
	}
	t.Users = append(t.Users, User{Name: user, Key: key, Issued: time.Now().UTC()})
	a.teams[team] = t
	if err := a.saveLocked(); err != nil {
		return nil, err
	}
	return creds, nil
}

// Teams lists the teams by name.
func (a *Authority) Teams() []Team {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Team, 0, len(a.teams))
	for _, t := range a.teams {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Owner returns the team that owns service ("" for none).
func (a *Authority) Owner(service string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.teams {
		if t.Revoked.IsZero() && slices.Contains(t.Services, service) {
			return t.Name
		}
	}
	return ""
}

// RevokeTeam revokes every user the team was issued: the account's
// revocation list names them, the running server closes their connections
// and refuses them from then on. It returns how many users were revoked.
func (a *Authority) RevokeTeam(team string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.teams[team]
	if t == nil {
		return 0, fmt.Errorf("%w: no team %s", ErrTeam, team)
	}
	now := time.Now().UTC().Truncate(time.Second)
	// a JWT's issued-at has second resolution: a user issued in this very
	// second is revoked too
	t.Revoked = now.Add(time.Second)
	n := 0
	for i, u := range t.Users {
		if u.Revoked.IsZero() {
			t.Users[i].Revoked = t.Revoked
			a.revocations[u.Key] = t.Revoked.Unix()
			n++
		}
	}
	if err := a.saveLocked(); err != nil {
		return 0, err
	}
	return n, a.pushLocked()
}

// AccountUpdate is the account's JWT as it is now (with every revocation)
// and the subject on which the servers of a cluster take it from a system
// user ($SYS.REQ.ACCOUNT.<account>.CLAIMS.UPDATE): the way a revocation
// reaches servers this authority does not run (up --nodes).
func (a *Authority) AccountUpdate() (subject, token string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	token, err = a.accountJWT()
	if err != nil {
		return "", "", fmt.Errorf("auth: account: %w", err)
	}
	return "$SYS.REQ.ACCOUNT." + a.accPub + ".CLAIMS.UPDATE", token, nil
}

// SystemUser issues a user of the system account that may only send
// account updates (AccountUpdate's subject) and read their answers.
func (a *Authority) SystemUser(name string) ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	key, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(key)
	uc.Name = "system." + name
	uc.Permissions.Pub.Allow.Add("$SYS.REQ.ACCOUNT." + a.accPub + ".CLAIMS.UPDATE")
	uc.Permissions.Sub.Allow.Add("_INBOX.system." + name + ".>")
	token, err := uc.Encode(a.system)
	if err != nil {
		return nil, fmt.Errorf("auth: sign system user %s: %w", name, err)
	}
	seed, _ := kp.Seed()
	return jwt.FormatUserConfig(token, seed)
}

// pushLocked hands the running server the new account claims.
func (a *Authority) pushLocked() error {
	token, err := a.accountJWT()
	if err != nil {
		return fmt.Errorf("auth: account: %w", err)
	}
	if a.resolver != nil {
		_ = a.resolver.Store(a.accPub, token)
	}
	if a.srv == nil {
		return nil
	}
	acc, err := a.srv.LookupAccount(a.accPub)
	if err != nil {
		return fmt.Errorf("auth: account: %w", err)
	}
	ac, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return fmt.Errorf("auth: account: %w", err)
	}
	a.srv.UpdateAccountClaims(acc, ac)
	return nil
}

func (a *Authority) saveLocked() error {
	teams := make([]*Team, 0, len(a.teams))
	for _, t := range a.teams {
		teams = append(teams, t)
	}
	sort.Slice(teams, func(i, j int) bool { return teams[i].Name < teams[j].Name })
	b, err := json.MarshalIndent(teams, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return writeFile(a.registryPath(), b)
}

func validName(field, name string) error {
	if err := subjects.ValidateService(name); err != nil {
		return fmt.Errorf("%w: %s %q: want [a-z][a-z0-9-]{0,30}", ErrTeam, field, name)
	}
	if field == "team" && (name == TeamAdmin || name == TeamAudit || name == TeamRedblack) {
		return fmt.Errorf("%w: %q is reserved", ErrTeam, name)
	}
	return nil
}

// IdentityOf reads the identity a creds file was issued for (the user
// JWT's name, "team.user").
func IdentityOf(creds []byte) (Identity, error) {
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return Identity{}, fmt.Errorf("auth: creds: %w", err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return Identity{}, fmt.Errorf("auth: creds: %w", err)
	}
	return ParseIdentity(uc.Name)
}

// ParseIdentity reads "team.user".
func ParseIdentity(name string) (Identity, error) {
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			id := Identity{name[:i], name[i+1:]}
			if subjects.ValidateService(id.Team) == nil && subjects.ValidateService(id.User) == nil {
				return id, nil
			}
			break
		}
	}
	return Identity{}, fmt.Errorf("auth: %q is not a redblack user name (team.user)", name)
}
