package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/redact"
)

// printConfig writes what 'ferry check' shows: the effective
// configuration as a --config file would say it, every setting of every
// source spelled out, each followed by where its value came from. Secrets
// are settings that hold a file's path, so only paths show; URLs show as
// logs show them.
func printConfig(w io.Writer, c *config) {
	fmt.Fprintf(w, "# ferry check: the configuration is valid. Each value is followed by where\n")
	fmt.Fprintf(w, "# it came from: default, flag, env (FERRY_*) or file (FILE:LINE:COL).\n")
	if c.file != nil {
		fmt.Fprintf(w, "# file: %s\n", c.file.path)
	}
	table := settings(&options{})
	for _, s := range table {
		if s.isGlobal && s.flag != "config" && s.flag != "source" {
			printSetting(w, "", s.flag, c.flags, c.values)
		}
	}
	fmt.Fprintln(w, "sources:")
	for _, sc := range c.sources {
		from := "flag --source"
		if c.fileSources() {
			from = "file " + sc.where
		}
		fmt.Fprintf(w, "  - name: %s  # %s\n", strconv.Quote(sc.name), from)
		fmt.Fprintf(w, "    url: %s  # %s\n", strconv.Quote(fetch.RedactString(sc.url)), from)
		for _, s := range table {
			if s.isGlobal {
				continue
			}
			vals := c.values
			if v, own := sc.own[s.flag]; own {
				vals = map[string]value{s.flag: v}
			}
			printSetting(w, "    ", s.flag, sc.flags, vals)
		}
	}
}

// printSetting writes one line, "KEY: VALUE  # FROM", for the setting
// name as fs holds it, with where vals says its value came from.
func printSetting(w io.Writer, indent, name string, fs *flag.FlagSet, vals map[string]value) {
	f := fs.Lookup(name)
	from := fromDefault
	if v, ok := vals[name]; ok {
		from = v.from + " " + v.where
	}
	fmt.Fprintf(w, "%s%s: %s  # %s\n", indent, name, yamlValue(f.Value), from)
}

// yamlValue renders v as YAML that reads back as the same setting.
func yamlValue(v flag.Value) string {
	switch kindOf(v) {
	case kindBool, kindInt:
		return v.String()
	case kindList:
		var items []string
		for _, s := range *v.(*listFlag) {
			items = append(items, strconv.Quote(shown(s)))
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return strconv.Quote(shown(v.String()))
}

// shown is a value as logs would show it: a URL without its userinfo and
// query values.
func shown(s string) string {
	if strings.Contains(s, "://") {
		return redact.String(s, nil)
	}
	return s
}
