package routing

import "sync/atomic"

// Rescues: while a release is in flight and the group its traffic would go
// back to is alive, a request that fails on the new (or canary) group is
// answered from that fallback group instead, within a budget.
//
// A service has at most one fallback at a time, read from its route:
//   - during a canary (groups other than the active one take traffic), the
//     active group: production rescues the canary and the baseline;
//   - once one group takes all traffic (or all but the bake's reference
//     slice, which the previous group keeps) and the route's previous group
//     still has instances (the bake, and the watch after completion while
//     the old group is kept), the previous group rescues the active one.
//
// The fallback's Budget bounds what it serves, direct and rescued together,
// to RescueRatio of the service's requests (plus a burst): a dead new group
// can move its share onto the fallback, never more.

// FallbackHeader names the group that answered a request which had failed
// on a new or canary group (a rescue), on the response the caller gets.
const FallbackHeader = "X-Redblack-Fallback"

// RescueRatio is the default share of a service's requests its fallback
// may serve in all (its own and the rescues): 1.2, room for the whole
// service and a fifth more.
const RescueRatio = 1.2

// rescueBurst is the budget's most tokens, in requests.
const rescueBurst = 100

// Budget is a token bucket in thousandths of a request: each request to
// the service deposits the ratio, each request the fallback serves takes
// one.
type Budget struct{ milli atomic.Int64 }

// NewBudget starts a budget with its burst.
func NewBudget() *Budget {
	b := &Budget{}
	b.milli.Store(rescueBurst * 1000)
	return b
}

// Deposit adds ratio of a request, up to the burst.
func (b *Budget) Deposit(ratio float64) {
	add := int64(ratio * 1000)
	for {
		v := b.milli.Load()
		n := min(v+add, rescueBurst*1000)
		if n == v || b.milli.CompareAndSwap(v, n) {
			return
		}
	}
}

// Spend takes one request's worth for a request the fallback serves
// directly: it is served whatever the budget, which may go below zero
// (down to one burst), and then allows no rescue until it is back.
func (b *Budget) Spend() {
	for {
		v := b.milli.Load()
		n := max(v-1000, -rescueBurst*1000)
		if n == v || b.milli.CompareAndSwap(v, n) {
			return
		}
	}
}

// TrySpend takes one request's worth for a rescue, if the budget has it.
func (b *Budget) TrySpend() bool {
	for {
		v := b.milli.Load()
		if v < 1000 {
			return false
		}
		if b.milli.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}

// Admit counts a request to the service that is about to go to group g
// in its fallback's budget, and returns the fallback (nil: none, or
// rescues are off): the caller rescues with Rescuer.
func (s *Service) Admit(g *Group, ratio float64) *Group {
	fb := s.Fallback
	if fb == nil {
		return nil
	}
	fb.Budget.Deposit(ratio)
	if g == fb {
		fb.Budget.Spend()
	}
	return fb
}

// Rescuer is the instance of fallback fb that answers a request which
// failed on group g, if it may be sent again (allowed) and fb's budget
// has room; nil otherwise.
func Rescuer(fb, g *Group, allowed bool) *Backend {
	if fb == nil || fb == g || !allowed || !fb.Budget.TrySpend() {
		return nil
	}
	return fb.Pick(nil)
}
