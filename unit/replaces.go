package unit

import (
	"slices"
	"strings"
)

// ReplacesCycle returns the cycle of Replaces that the unit name, with
// requirements reqs, would close among the other units (by name), as
// "a.service replaces b.service, b.service replaces a.service"; "" if
// there is none. A unit replacing itself is no cycle. Units are visited in
// name order, so the same input always names the same cycle.
func ReplacesCycle(name string, reqs Requirements, others map[string]Requirements) string {
	if len(reqs.Replaces) == 0 {
		return ""
	}
	replaces := make(map[string]Requirements, len(others)+1)
	names := make([]string, 0, len(others)+1)
	for n, r := range others {
		if n != name && len(r.Replaces) > 0 {
			replaces[n] = r
			names = append(names, n)
		}
	}
	replaces[name] = reqs
	names = append(names, name)
	slices.Sort(names)

	// Depth first from name along "replaces" edges, looking for name again.
	var path []string
	seen := map[string]bool{}
	var walk func(cur string) bool
	walk = func(cur string) bool {
		path = append(path, cur)
		for _, next := range names {
			if next == cur || !replaces[cur].ReplacesUnit(next) {
				continue
			}
			if next == name {
				path = append(path, next)
				return true
			}
			if !seen[next] {
				seen[next] = true
				if walk(next) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		return false
	}
	if !walk(name) {
		return ""
	}
	parts := make([]string, 0, len(path)-1)
	for i := 0; i+1 < len(path); i++ {
		parts = append(parts, path[i]+" replaces "+path[i+1])
	}
	return strings.Join(parts, ", ")
}

// ReplacesOf reads the Replaces requirements of stored units, for
// ReplacesCycle: units whose contents do not parse or replace nothing are
// left out.
func ReplacesOf(units []Unit) map[string]Requirements {
	out := make(map[string]Requirements)
	for _, u := range units {
		if !strings.Contains(u.Content, "Replaces") {
			continue
		}
		f, err := Parse(u.Content)
		if err != nil {
			continue
		}
		if r := f.Requirements(u.Name); len(r.Replaces) > 0 {
			out[u.Name] = r
		}
	}
	return out
}
