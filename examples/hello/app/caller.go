package app

import (
	"strings"

	"github.com/redblack/redblack/shared/subjects"
)

// parseDownstream splits SERVICE[,SERVICE] and checks each name.
func parseDownstream(s string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if err := subjects.ValidateService(name); err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}
