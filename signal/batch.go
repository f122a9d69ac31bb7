package signal

import (
	"encoding/json"
	"slices"
	"strings"
)

// Changes are told to the application at once: one Change per source,
// ordered by source name. Sources published in the same sync round share
// one notification, whatever way it takes.
type Changes []Change

// merge returns the changes of newer (the last of each source, when it
// names one twice), and of older those of sources newer does not name:
// the newest of each source, ordered by source name.
func merge(newer, older Changes) Changes {
	var out Changes
	for i, c := range newer {
		if !newer[i+1:].has(c.Source) {
			out = append(out, c)
		}
	}
	for _, c := range older {
		if !out.has(c.Source) {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b Change) int { return strings.Compare(a.Source, b.Source) })
	return out
}

// has reports whether cs holds a change of source.
func (cs Changes) has(source string) bool {
	return slices.ContainsFunc(cs, func(c Change) bool { return c.Source == source })
}

// overlaps reports whether cs and o name a source in common.
func (cs Changes) overlaps(o Changes) bool {
	return slices.ContainsFunc(o, func(c Change) bool { return cs.has(c.Source) })
}

// join lists one field of every change, comma-separated, in order.
func (cs Changes) join(field func(Change) string) string {
	vals := make([]string, len(cs))
	for i, c := range cs {
		vals[i] = field(c)
	}
	return strings.Join(vals, ",")
}

// sources lists the sources of cs, comma-separated.
func (cs Changes) sources() string { return cs.join(func(c Change) string { return c.Source }) }

// revisions lists the revisions of cs, in the order of sources.
func (cs Changes) revisions() string { return cs.join(func(c Change) string { return c.Revision }) }

// logAttrs name cs in a log line: "source" and "revision" for one change,
// as they always have; "sources" and "revisions", listed, for several.
func (cs Changes) logAttrs() []any {
	if len(cs) == 1 {
		return []any{"source", cs[0].Source, "revision", cs[0].Revision}
	}
	return []any{"sources", cs.sources(), "revisions", cs.revisions()}
}

// body is the JSON an HTTP notification carries, and FERRY_CHANGES: every
// change under "changes"; for a single change its fields at the top level
// too, the body receivers written for one source at a time read.
type body struct {
	*Change
	Changes []Change `json:"changes"`
}

// body encodes cs as a notification's body.
func (cs Changes) body() []byte {
	b := body{Changes: cs}
	if len(cs) == 1 {
		b.Change = &cs[0]
	}
	out, _ := json.Marshal(b) // strings only: cannot fail
	return out
}
