package validate

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/ferrysync/ferry/internal/report"
)

// schemaRule is one "GLOB=FILE" of Options.Schemas.
type schemaRule struct {
	glob   string
	file   string
	schema *jsonschema.Schema
}

// parseRule splits "GLOB=FILE" and checks the glob.
func parseRule(s string) (*schemaRule, error) {
	glob, file, ok := strings.Cut(s, "=")
	glob, file = strings.TrimPrefix(strings.TrimSpace(glob), "./"), strings.TrimSpace(file)
	if !ok || glob == "" || file == "" {
		return nil, report.Fieldf("{Schemas} %q: want GLOB=FILE", s)
	}
	if strings.HasPrefix(glob, "/") {
		return nil, report.Fieldf("{Schemas} %q: the glob is relative to the revision's tree", s)
	}
	for _, seg := range strings.Split(glob, "/") {
		if _, err := path.Match(seg, ""); err != nil {
			return nil, report.Fieldf("{Schemas} %q: bad glob: %v", s, err)
		}
	}
	return &schemaRule{glob: glob, file: file}, nil
}

// compileRule reads and compiles the schema of the rule s. References to
// other schemas resolve against FILE's own location, on the local
// filesystem only.
func compileRule(s string) (*schemaRule, error) {
	r, err := parseRule(s)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(r.file)
	if err != nil {
		return nil, report.Fieldf("{Schemas} %s: %v", r.file, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, report.Fieldf("{Schemas} %v", err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, report.Fieldf("{Schemas} %s: not JSON: %v", r.file, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	url := "file://" + filepath.ToSlash(abs)
	if err := c.AddResource(url, doc); err != nil {
		return nil, report.Fieldf("{Schemas} %s: %s", r.file, report.FirstLine(err.Error()))
	}
	if r.schema, err = c.Compile(url); err != nil {
		return nil, report.Fieldf("{Schemas} %s: not a valid schema: %s", r.file, report.FirstLine(err.Error()))
	}
	return r, nil
}

// matches reports whether rel, a slash-separated path in the tree, is one
// the rule checks.
func (r *schemaRule) matches(rel string) bool {
	return matchGlob(strings.Split(r.glob, "/"), strings.Split(rel, "/"))
}

// matchGlob matches path segments against glob segments, where "**"
// stands for any number of segments, none included.
func matchGlob(glob, name []string) bool {
	for len(glob) > 0 {
		if glob[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchGlob(glob[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(glob[0], name[0]); !ok {
			return false
		}
		glob, name = glob[1:], name[1:]
	}
	return len(name) == 0
}

var printer = message.NewPrinter(language.English)

// check validates the documents of the file rel against the rule's schema.
func (r *schemaRule) check(rel string, docs []any) error {
	for i, d := range docs {
		err := r.schema.Validate(d)
		if err == nil {
			continue
		}
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return fmt.Errorf("schema %s on %s: %w", r.file, rel, err)
		}
		first, n := firstLeaf(ve)
		where := "at the top"
		if len(first.InstanceLocation) > 0 {
			where = "at " + pointer(first.InstanceLocation)
		}
		detail := fmt.Sprintf("%s: %s (schema %s)", where, first.ErrorKind.LocalizedString(printer), r.file)
		if n > 1 {
			detail += fmt.Sprintf(", and %d more", n-1)
		}
		if len(docs) > 1 {
			detail = fmt.Sprintf("document %d: %s", i+1, detail)
		}
		return &Error{Check: CheckSchema, File: rel, Detail: detail, Err: err}
	}
	return nil
}

// firstLeaf returns the first innermost cause of e, and how many innermost
// causes there are: those say what is wrong, the rest where.
func firstLeaf(e *jsonschema.ValidationError) (*jsonschema.ValidationError, int) {
	if len(e.Causes) == 0 {
		return e, 1
	}
	var first *jsonschema.ValidationError
	n := 0
	for _, c := range e.Causes {
		f, k := firstLeaf(c)
		if first == nil {
			first = f
		}
		n += k
	}
	return first, n
}

// pointer writes a location as a JSON Pointer (RFC 6901).
func pointer(loc []string) string {
	var b strings.Builder
	for _, s := range loc {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(s))
	}
	return b.String()
}

// jsonValue turns a decoded YAML or TOML value into one of the JSON model
// (maps with string keys, slices, numbers, strings, booleans, nil), the
// only kinds the schema validator knows: a YAML binary becomes its base64
// text, a TOML date its RFC 3339 text, as a JSON document would carry them.
func jsonValue(v any) any {
	switch v := v.(type) {
	case nil, bool, string, json.Number,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return v
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return fmt.Sprint(v) // JSON has no such number
		}
		return v
	case float32:
		return jsonValue(float64(v))
	case map[string]any:
		for k, e := range v {
			v[k] = jsonValue(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonValue(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = jsonValue(e)
		}
		return v
	case []map[string]any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = jsonValue(e)
		}
		return out
	case []byte:
		return base64.StdEncoding.EncodeToString(v)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(v)
}
