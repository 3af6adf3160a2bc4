package routing

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
)

// Applied is what a router answers on subjects.RouterApplied, and a
// discovery client on subjects.CallerApplied: the routes revision its live table holds for the
// service named in the request, and its routable instances per group. A
// switch is announced only once every one that answers has applied it.
type Applied struct {
	Router   string `json:"router"`
	Revision uint64 `json:"revision"`
	// Up is the number of routable instances per group in its table.
	Up map[string]int `json:"up"`
}

// CallerMicro is the NATS micro name of the discovery clients (registered
// as "redblack-caller"): a router finds them by a micro ping, as it finds
// the other routers, and waits for them before it announces a switch.
const CallerMicro = "caller"

// AppliedOf is what t holds of service, answered as id.
func (t *Table) AppliedOf(id, service string) Applied {
	a := Applied{Router: id, Up: map[string]int{}}
	if svc := t.Services[service]; svc != nil {
		a.Revision = svc.Revision
		for name, g := range svc.All {
			a.Up[name] = len(g.Backends)
		}
	}
	return a
}

// AnswerApplied answers every request on subject (subjects.RouterApplied
// or CallerApplied; no queue group: each one answers) with what the table
// now routed from holds of the service the request names.
func AnswerApplied(nc *nats.Conn, subject, id string, table func() *Table) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		b, _ := json.Marshal(table().AppliedOf(id, string(m.Data)))
		_ = m.Respond(b)
	})
	if err != nil {
		return nil, err
	}
	// answering once this returns: a switch started right after must not
	// miss this one
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return sub, nil
}
