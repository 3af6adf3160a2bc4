package spec

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
)

// unknownFieldRE is yaml.v3's message for a field KnownFields refused.
var unknownFieldRE = regexp.MustCompile(`line (\d+): field (\S+) not found in type ([\w.]+)`)

// spellUnknown rewrites yaml's "field capacty not found in type
// spec.Service" in the spec's own words: "line 3: capacty: unknown field;
// did you mean capacity?" (the nearest field of that part of the spec,
// when one is near).
func spellUnknown(msg string) string {
	return unknownFieldRE.ReplaceAllStringFunc(msg, func(m string) string {
		g := unknownFieldRE.FindStringSubmatch(m)
		line, field, typ := g[1], g[2], g[3]
		out := fmt.Sprintf("line %s: %s: unknown field", line, field)
		if near := nearest(field, yamlFields(typ)); near != "" {
			out += "; did you mean " + near + "?"
		}
		return out
	})
}

// yamlFields are the YAML names of the fields of the spec's type named
// typ ("spec.Service", "spec.Canary" …).
func yamlFields(typ string) []string {
	t, ok := specTypes()[typ]
	if !ok {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// specTypes are the struct types reachable from Service, by the name yaml
// gives them.
func specTypes() map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeFor[Service]().PkgPath() {
			return
		}
		name := "spec." + t.Name()
		if _, seen := out[name]; seen {
			return
		}
		out[name] = t
		for i := range t.NumField() {
			walk(t.Field(i).Type)
		}
	}
	walk(reflect.TypeFor[Service]())
	return out
}

// nearest is the name within edit distance 2 of s (a third of its length
// for longer ones) that is closest, or "".
func nearest(s string, names []string) string {
	best, bestD := "", max(2, len(s)/3)+1
	for _, n := range names {
		if d := distance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
