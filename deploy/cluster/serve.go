package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/deploy/natsconf"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/prom"
)

// serve starts what up's own process does beside the supervised ones, as
// the one-process up does: the teams' admin endpoints (a revocation sent
// to every node), and the admin port, the dashboard and the traces.
func (c *Cluster) serve(cfg Config) error {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if err := mesh.ServeTeams(ctx, c.nc, c.auth, cfg.Log, c.pushAccount); err != nil {
		return err
	}
	var g prometheus.Gatherer
	if cfg.Admin != "" {
		own, err := prom.NewRegistry()
		if err != nil {
			return err
		}
		gs := prometheus.Gatherers{labelled{own, "up"}}
		names := make([]string, 0, len(c.metrics))
		for name := range c.metrics {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			gs = append(gs, prom.Remote{URL: c.metrics[name], Labels: map[string]string{"process": name}})
		}
		g = gs
	}
	var err error
	c.observers, err = mesh.Observe(ctx, mesh.ObserveConfig{Admin: cfg.Admin, Gatherer: g, UI: cfg.UI, Spans: cfg.Spans, NC: c.nc, Log: cfg.Log,
		Dial: func(creds []byte) (*nats.Conn, error) {
			opts, err := natsx.CredsOptions(creds)
			if err != nil {
				return nil, err
			}
			return nats.Connect(c.URLs(), append(opts, nats.Name("redblack-dashboard-viewer"))...)
		}})
	return err
}

// labelled is a Gatherer with a process label on every series.
type labelled struct {
	prometheus.Gatherer
	process string
}

// Gather gathers and labels.
func (l labelled) Gather() ([]*dto.MetricFamily, error) {
	fams, err := l.Gatherer.Gather()
	if err != nil {
		return nil, err
	}
	return prom.AddLabels(fams, map[string]string{"process": l.process}), nil
}

// AdminAddr is the admin port's address (nil without one).
func (c *Cluster) AdminAddr() net.Addr { return c.observers.AdminAddr() }

// UIAddr is the dashboard's address (nil without one).
func (c *Cluster) UIAddr() net.Addr { return c.observers.UIAddr() }

// pushAccount takes the account as it is now (a team revoked) to every
// node: sent by a system user on $SYS.REQ.ACCOUNT.<account>.CLAIMS.UPDATE,
// which each node answers, and written into the nodes' configuration, so
// that a node restarted later keeps it. It fails unless every node
// answered that it updated.
func (c *Cluster) pushAccount() error {
	accounts, err := c.auth.ServerConfig()
	if err != nil {
		return err
	}
	if _, err := natsconf.Write(c.confDir, c.plan, accounts); err != nil {
		return fmt.Errorf("cluster: rewrite the nodes' configuration: %w", err)
	}
	subject, token, err := c.auth.AccountUpdate()
	if err != nil {
		return err
	}
	creds, err := c.auth.SystemUser("up")
	if err != nil {
		return err
	}
	opts, err := natsx.CredsOptions(creds)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(c.URLs(), append(opts, nats.Name("redblack-up-system"), nats.CustomInboxPrefix("_INBOX.system.up"))...)
	if err != nil {
		return fmt.Errorf("cluster: connect as the system user: %w", err)
	}
	defer nc.Close()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	if err := nc.PublishRequest(subject, inbox, []byte(token)); err != nil {
		return err
	}
	updated := map[string]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for len(updated) < len(c.plan.Nodes) {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return fmt.Errorf("cluster: %d of %d nodes took the account update: %w", len(updated), len(c.plan.Nodes), err)
		}
		var ans struct {
			Server struct {
				Name string `json:"name"`
			} `json:"server"`
			Data struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"data"`
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &ans); err != nil {
			return fmt.Errorf("cluster: an account update's answer %q: %w", msg.Data, err)
		}
		if ans.Error != nil {
			return fmt.Errorf("cluster: node %s refused the account update: %s", ans.Server.Name, ans.Error.Description)
		}
		updated[ans.Server.Name] = true
	}
	return nil
}
