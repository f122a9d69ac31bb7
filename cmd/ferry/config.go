package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/ferrysync/ferry/sync"
)

// maxConfigFile bounds a --config file: a list of sources is a few KiB.
const maxConfigFile = 1 << 20

// fileConfig is what a --config file says, every value with its place.
// Its keys are the settings table's flags without the dashes, so a row
// added to the table is a key of the file at once.
type fileConfig struct {
	path string
	// top holds the global settings and the defaults of the file's sources.
	top     map[string]value
	sources []fileSource
	// sourcesAt is where the sources list is, when the file has one.
	sourcesAt string
}

// fileSource is one entry of the file's sources list.
type fileSource struct {
	name, url string
	where     string // FILE:LINE:COL of the entry
	values    map[string]value
}

// kind is the YAML type a setting takes, from its flag's value type.
type kind int

const (
	kindString kind = iota
	kindBool
	kindInt
	kindDuration
	kindSize
	kindList
)

func kindOf(v flag.Value) kind {
	switch v.(type) {
	case *listFlag:
		return kindList
	case *sizeFlag:
		return kindSize
	}
	if b, ok := v.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return kindBool
	}
	if g, ok := v.(flag.Getter); ok {
		switch g.Get().(type) {
		case time.Duration:
			return kindDuration
		case int, int64, uint, uint64:
			return kindInt
		}
	}
	return kindString
}

// readConfigFile reads and strictly decodes the file at path: an unknown
// key, a value of the wrong type, a global setting in a source, a missing
// url or a duplicate source name is an error FILE:LINE:COL, all of them
// together. Values are checked against their types here and parsed later,
// with the rest of the configuration.
func readConfigFile(path string) (*fileConfig, []error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, []error{fmt.Errorf("--config: %w", err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, []error{fmt.Errorf("--config: read %s: %w", path, err)}
	}
	if len(data) > maxConfigFile {
		return nil, []error{fmt.Errorf("--config %s: larger than %d bytes", path, maxConfigFile)}
	}
	d := &decoder{path: path, kinds: map[string]kind{}, global: map[string]bool{}}
	fs := flagSet(&options{}, cmdCheck, io.Discard)
	for _, s := range settings(&options{}) {
		d.kinds[s.flag] = kindOf(fs.Lookup(s.flag).Value)
		d.global[s.flag] = s.isGlobal
	}
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		var se *yaml.SyntaxError
		if errors.As(err, &se) && se.Token != nil {
			return nil, []error{fmt.Errorf("%s: %s", d.pos(se.Token.Position.Line, se.Token.Position.Column), se.Message)}
		}
		return nil, []error{fmt.Errorf("--config %s: %w", path, err)}
	}
	c := &fileConfig{path: path, top: map[string]value{}}
	if len(file.Docs) > 1 {
		d.errorf(file.Docs[1], "want one YAML document, found %d", len(file.Docs))
	}
	if len(file.Docs) == 0 || file.Docs[0].Body == nil {
		return c, d.errs // an empty file says nothing
	}
	top, ok := unwrap(file.Docs[0].Body).(*ast.MappingNode)
	if !ok {
		d.errorf(file.Docs[0].Body, "want a mapping of settings and sources at the top level")
		return c, d.errs
	}
	for _, kv := range top.Values {
		key, ok := d.key(kv)
		if !ok {
			continue
		}
		switch key {
		case "sources":
			c.sourcesAt = d.where(kv.Key)
			c.sources = d.sources(kv.Value)
		case "source", "config":
			d.errorf(kv.Key, "%s: not a key of the file (list sources under sources:)", key)
		default:
			if v, ok := d.setting(key, kv); ok {
				c.top[key] = v
			}
		}
	}
	return c, d.errs
}

// decoder walks the file's syntax tree, collecting errors with positions.
type decoder struct {
	path   string
	kinds  map[string]kind
	global map[string]bool
	errs   []error
}

func (d *decoder) pos(line, col int) string { return fmt.Sprintf("%s:%d:%d", d.path, line, col) }

func (d *decoder) where(n ast.Node) string {
	p := n.GetToken().Position
	return d.pos(p.Line, p.Column)
}

func (d *decoder) errorf(n ast.Node, format string, args ...any) {
	d.errs = append(d.errs, fmt.Errorf("%s: %s", d.where(n), fmt.Sprintf(format, args...)))
}

// key returns kv's key, which must be a plain string.
func (d *decoder) key(kv *ast.MappingValueNode) (string, bool) {
	k, ok := kv.Key.(*ast.StringNode)
	if !ok {
		d.errorf(kv.Key, "want a key, found %s", kv.Key.String())
		return "", false
	}
	return k.Value, true
}

// setting decodes the value of a setting's key, or reports why it cannot.
func (d *decoder) setting(key string, kv *ast.MappingValueNode) (value, bool) {
	k, known := d.kinds[key]
	if !known {
		d.errorf(kv.Key, "unknown key %q", key)
		return value{}, false
	}
	n := unwrap(kv.Value)
	var vals []string
	if seq, ok := n.(*ast.SequenceNode); ok && k == kindList {
		for _, e := range seq.Values {
			s, err := scalar(unwrap(e), kindString)
			if err != nil {
				d.errorf(e, "%s: %v", key, err)
				return value{}, false
			}
			vals = append(vals, s)
		}
	} else {
		s, err := scalar(n, k)
		if err != nil {
			d.errorf(kv.Value, "%s: %v", key, err)
			return value{}, false
		}
		vals = []string{s}
	}
	return value{vals: vals, from: fromFile, where: d.where(kv.Key)}, true
}

// scalar returns the text of a scalar node of kind k.
func scalar(n ast.Node, k kind) (string, error) {
	switch v := n.(type) {
	case *ast.StringNode:
		switch k {
		case kindString, kindList, kindDuration, kindSize:
			return v.Value, nil
		}
	case *ast.BoolNode:
		if k == kindBool {
			return strconv.FormatBool(v.Value), nil
		}
	case *ast.IntegerNode:
		switch k {
		case kindInt, kindSize:
			return fmt.Sprint(v.Value), nil
		case kindDuration:
			if fmt.Sprint(v.Value) == "0" {
				return "0", nil
			}
		}
	}
	want := map[kind]string{
		kindString:   "a string (quote a value that YAML reads as another type)",
		kindBool:     "true or false",
		kindInt:      "an integer",
		kindDuration: "a duration such as 30s or 5m",
		kindSize:     "a size such as 1048576, 512Ki or 1Gi",
		kindList:     "a string or a list of strings",
	}[k]
	return "", fmt.Errorf("want %s, found %s", want, describeNode(n))
}

func describeNode(n ast.Node) string {
	switch n.(type) {
	case nil, *ast.NullNode:
		return "no value"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.AliasNode:
		return "an alias (not supported)"
	}
	return strconv.Quote(n.String())
}

// unwrap looks through an anchor or a tag to the value it marks.
func unwrap(n ast.Node) ast.Node {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		default:
			return n
		}
	}
}

// sources decodes the sources list.
func (d *decoder) sources(n ast.Node) []fileSource {
	seq, ok := unwrap(n).(*ast.SequenceNode)
	if !ok {
		d.errorf(n, "sources: want a list of sources, found %s", describeNode(unwrap(n)))
		return nil
	}
	var out []fileSource
	first := map[string]string{}
	for i, e := range seq.Values {
		m, ok := unwrap(e).(*ast.MappingNode)
		if !ok {
			d.errorf(e, "sources[%d]: want a mapping with name, url and settings, found %s", i, describeNode(unwrap(e)))
			continue
		}
		s := fileSource{values: map[string]value{}}
		if len(m.Values) > 0 {
			s.where = d.where(m.Values[0].Key)
		}
		for _, kv := range m.Values {
			key, ok := d.key(kv)
			if !ok {
				continue
			}
			switch key {
			case "name", "url":
				v, err := scalar(unwrap(kv.Value), kindString)
				if err != nil {
					d.errorf(kv.Value, "%s: %v", key, err)
					continue
				}
				if key == "url" {
					s.url = v
					continue
				}
				s.name = v
				if !sync.ValidName(v) {
					d.errorf(kv.Value, "name %q: want %s", v, sync.NameRule)
				} else if at, dup := first[v]; dup {
					d.errorf(kv.Value, "duplicate source name %q (first at %s)", v, at)
				} else {
					first[v] = d.where(kv.Value)
				}
			default:
				if _, known := d.kinds[key]; known && d.global[key] {
					d.errorf(kv.Key, "%s is a global setting: set it at the top level, not in a source", key)
					continue
				}
				if v, ok := d.setting(key, kv); ok {
					s.values[key] = v
				}
			}
		}
		at := s.where // the entry's first key: a mapping's own token is its first value
		if at == "" {
			at = d.where(e)
		}
		if s.url == "" {
			d.errs = append(d.errs, fmt.Errorf("%s: sources[%d]: url is required", at, i))
		}
		if s.name == "" && len(seq.Values) > 1 {
			d.errs = append(d.errs, fmt.Errorf("%s: sources[%d]: name is required when there are several sources", at, i))
		}
		out = append(out, s)
	}
	return out
}
