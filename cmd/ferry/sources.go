package main

import (
	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/file"
)

// sources is the one place that maps URL kinds to backends. A new backend
// is one line here plus its package.
func sources(o *options) fetch.Registry {
	return fetch.Registry{
		"file": func(u *fetch.URL, env fetch.Env) (fetch.Source, error) { return file.New(u, env) },
	}
}
