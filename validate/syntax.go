package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"reflect"
	"strings"
	"unsafe"

	"github.com/BurntSushi/toml"
	"github.com/goccy/go-yaml"

	"github.com/ferrysync/ferry/internal/report"
)

// format is a kind of file the checks can parse, known by its extension.
type format string

const (
	formatNone format = ""
	formatJSON format = "JSON"
	formatYAML format = "YAML"
	formatTOML format = "TOML"
)

func formatOf(name string) format {
	switch strings.ToLower(path.Ext(name)) {
	case ".json":
		return formatJSON
	case ".yaml", ".yml":
		return formatYAML
	case ".toml":
		return formatTOML
	}
	return formatNone
}

// decode parses data as f and returns its documents (one for JSON and
// TOML, one per YAML document) as values of Go's JSON model, which the
// schema validator reads. A parse error is a syntax *Error for rel.
func decode(f format, rel string, data []byte) ([]any, error) {
	var docs []any
	var err error
	switch f {
	case formatJSON:
		docs, err = decodeJSON(rel, data)
	case formatYAML:
		docs, err = decodeYAML(rel, data)
	case formatTOML:
		docs, err = decodeTOML(rel, data)
	default:
		return nil, fmt.Errorf("%s: no parser for this file", rel)
	}
	if err != nil {
		return nil, err
	}
	for i, d := range docs {
		if n, distinct := expanded(d); n > maxExpanded && n > aliasRatio*distinct {
			return nil, &Error{Check: CheckSyntax, File: rel, Detail: fmt.Sprintf(
				"YAML aliases expand document %d to more than %d values, %d times the values it holds: refused, as an alias bomb would be", i+1, maxExpanded, aliasRatio)}
		}
		docs[i] = jsonValue(d)
	}
	return docs, nil
}

// A YAML alias decodes as its anchor's value, shared: a few hundred bytes
// of anchors, each a list of aliases of the one before, hold billions of
// values once expanded, which the schema validator would walk. A document
// is refused when it expands past maxExpanded values and past aliasRatio
// times the values it holds; one without aliases never is.
const (
	maxExpanded = 1 << 20
	aliasRatio  = 100
)

// expanded counts the values of v as the schema validator walks them (an
// alias once per use) and as they are held (once), in one pass over what
// is held.
func expanded(v any) (n, distinct int64) {
	seen := map[unsafe.Pointer]int64{}
	var count func(v any) int64
	count = func(v any) int64 {
		var p unsafe.Pointer
		switch v := v.(type) {
		case map[string]any:
			p = reflect.ValueOf(v).UnsafePointer()
		case map[any]any:
			p = reflect.ValueOf(v).UnsafePointer()
		case []any:
			if len(v) > 0 {
				p = unsafe.Pointer(&v[0])
			}
		default:
			distinct++
			return 1
		}
		if c, ok := seen[p]; ok && p != nil {
			return c
		}
		c := int64(1)
		distinct++
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				c = min(c+count(e), math.MaxInt64/2)
			}
		case map[any]any:
			for _, e := range v {
				c = min(c+count(e), math.MaxInt64/2)
			}
		case []any:
			for _, e := range v {
				c = min(c+count(e), math.MaxInt64/2)
			}
		}
		if p != nil {
			seen[p] = c
		}
		return c
	}
	return count(v), distinct
}

func decodeJSON(rel string, data []byte) ([]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	if err == nil {
		// One value, then nothing but white space.
		if _, extra := dec.Token(); extra != io.EOF {
			off := dec.InputOffset()
			line, col := position(data, off)
			return nil, &Error{Check: CheckSyntax, File: rel, Line: line, Column: col, Detail: "data after the top-level value"}
		}
		return []any{v}, nil
	}
	off := int64(len(data))
	detail := err.Error()
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		off = max(se.Offset-1, 0) // Offset is just past the offending byte
	case errors.Is(err, io.EOF):
		detail = "no JSON value"
	case errors.Is(err, io.ErrUnexpectedEOF):
		detail = "unexpected end of JSON input"
	}
	line, col := position(data, off)
	return nil, &Error{Check: CheckSyntax, File: rel, Line: line, Column: col, Detail: detail, Err: err}
}

// position returns the 1-based line and column (in bytes) of offset off.
func position(data []byte, off int64) (int, int) {
	off = min(off, int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

func decodeYAML(rel string, data []byte) ([]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			e := &Error{Check: CheckSyntax, File: rel, Detail: report.FirstLine(err.Error()), Err: err}
			var ye yaml.Error
			if errors.As(err, &ye) {
				e.Detail = ye.GetMessage()
				if tk := ye.GetToken(); tk != nil && tk.Position != nil {
					e.Line, e.Column = tk.Position.Line, tk.Position.Column
				}
			}
			return nil, e
		}
		docs = append(docs, v)
	}
}

func decodeTOML(rel string, data []byte) ([]any, error) {
	var v map[string]any
	if err := toml.Unmarshal(data, &v); err != nil {
		e := &Error{Check: CheckSyntax, File: rel, Detail: report.FirstLine(err.Error()), Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Detail, e.Line, e.Column = pe.Message, pe.Position.Line, pe.Position.Col
		}
		return nil, e
	}
	return []any{v}, nil
}
