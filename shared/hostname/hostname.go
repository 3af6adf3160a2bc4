// Package hostname puts a host name in its one form: the form a service
// claims it in (its spec) and the form a request is routed by (its Host
// header), so that no two spellings of one name can reach two services.
package hostname

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/net/idna"
)

// ErrInvalid: not a host name.
var ErrInvalid = errors.New("not a host name")

// Normalize is h in its one form: any port dropped, one trailing dot (the
// DNS root) dropped, Unicode mapped and converted to ASCII (IDNA, the
// lookup profile: UTS #46 mapping, so that look-alikes such as full-width
// letters become the letters they stand for), and lower case. A name that
// is empty, has an empty label or does not convert is ErrInvalid.
func Normalize(h string) (string, error) {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(h, ".")
	a, err := idna.Lookup.ToASCII(h)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalid, h, err)
	}
	a = strings.ToLower(a)
	if a == "" || strings.HasPrefix(a, ".") || strings.HasSuffix(a, ".") || strings.Contains(a, "..") {
		return "", fmt.Errorf("%w: %q", ErrInvalid, h)
	}
	return a, nil
}
