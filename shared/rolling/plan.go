// Package rolling plans a rolling release of a stateful service: its slots are replaced batch by
// batch, at most max_unavailable at a time, and a roll-back replaces the
// slots already done, batch by batch in reverse.
package rolling

import (
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
)

// MaxUnavailable is how many slots may be down at once: a count ("2") or
// a percentage of the slots ("25%").
type MaxUnavailable struct {
	Count   int
	Percent float64
}

// ParseMaxUnavailable reads a count or a percentage; "" is the default, 1.
func ParseMaxUnavailable(s string) (MaxUnavailable, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return MaxUnavailable{Count: 1}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || math.IsNaN(v) || v <= 0 || v > 100 {
			return MaxUnavailable{}, fmt.Errorf("rolling: max_unavailable %q: want a percentage in (0, 100]", s)
		}
		return MaxUnavailable{Percent: v}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return MaxUnavailable{}, fmt.Errorf("rolling: max_unavailable %q: want a count ≥ 1 or a percentage", s)
	}
	return MaxUnavailable{Count: n}, nil
}

// Of is the batch size for n slots: a count as it is, a percentage of n
// rounded down (as Kubernetes rounds max_unavailable); at least 1 and at
// most n (0 when there is no slot).
func (m MaxUnavailable) Of(n int) int {
	if n <= 0 {
		return 0
	}
	k := m.Count
	if m.Percent > 0 {
		k = int(math.Floor(m.Percent / 100 * float64(n)))
	}
	return min(max(k, 1), n)
}

// String is the value as a spec writes it.
func (m MaxUnavailable) String() string {
	if m.Percent > 0 {
		return strconv.FormatFloat(m.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(m.Count)
}

// Slots names a service's n stable slots: <service>-0 … <service>-(n-1).
func Slots(service string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = SlotName(service, i)
	}
	return out
}

// SlotNames names the given slots of a service.
func SlotNames(service string, slots []int) []string {
	out := make([]string, len(slots))
	for i, s := range slots {
		out[i] = SlotName(service, s)
	}
	return out
}

// SlotName is the name of a service's slot i: its instances' identity and
// its volume's directory.
func SlotName(service string, i int) string { return fmt.Sprintf("%s-%d", service, i) }

// Plan splits the slots, in their order, into batches of at most k.
func Plan[T any](slots []T, k int) [][]T {
	if k < 1 {
		k = 1
	}
	var out [][]T
	for i := 0; i < len(slots); i += k {
		out = append(out, append([]T(nil), slots[i:min(i+k, len(slots))]...))
	}
	return out
}

// Reverse is the roll-back of a roll that had replaced the slots of its
// first done batches (the batch that failed counts as done: some of its
// slots may run the new version): those batches, last first, each in
// reverse order.
func Reverse[T any](batches [][]T, done int) [][]T {
	done = min(max(done, 0), len(batches))
	out := make([][]T, 0, done)
	for i := done - 1; i >= 0; i-- {
		b := make([]T, len(batches[i]))
		for j, s := range batches[i] {
			b[len(b)-1-j] = s
		}
		out = append(out, b)
	}
	return out
}

// SlotOf is the slot of a key among n slots (FNV-1a, modulo n): every
// caller sends a key to the same slot while the number of slots stays.
func SlotOf(key string, n int) int {
	if n <= 0 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}
