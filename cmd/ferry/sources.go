package main

import (
	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/file"
	"github.com/ferrysync/ferry/fetch/git"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/fetch/oci"
	"github.com/ferrysync/ferry/fetch/s3"
)

// sourceHelp is the URL summary in --help.
const sourceHelp = `Source URLs (go-getter syntax: kind::URL, //subdir, ?options):
  git::https://host/org/repo.git?ref=main    git (ref: branch, tag, SHA or semver:RANGE; depth, default 1;
                                              submodules: recursive, shallow or off;
                                              paths: dirs or globs, comma-separated)
  git@host:org/repo.git, git::ssh://...      git over SSH (needs --git-known-hosts-file)
  git::file:///srv/repo                      a local repository, read in place
  https://host/app.yaml                      one file, published under its name
  https://host/b.tar.gz?checksum=sha256:HEX  archive (tar.gz, tgz, tar, zip; ?archive=)
  s3://bucket/prefix/?region=eu-west-1       an S3 prefix (a key without / is one object;
  s3::http://127.0.0.1:9000/bucket/prefix/    ?version=ID pins it); custom endpoints path style
  oci://ghcr.io/org/conf:1.4.2               an OCI artifact's layer (@sha256:DIGEST pins it;
  oci://REGISTRY/REPO?tag=semver:~1.4        ?tag=semver:RANGE follows the highest tag; layer,
  oci::http://127.0.0.1:5000/conf:dev        extract, platform); oci::http:// without TLS
  file:///etc/seed-config, /etc/seed-config  a local directory
`

// sources is the one place that maps URL kinds to backends. A new backend
// is one entry here, its flags, and its package.
func sources(o *options) fetch.Registry {
	return fetch.Registry{
		"file": func(u *fetch.URL, env fetch.Env) (fetch.Source, error) { return file.New(u, env) },
		"git":  func(u *fetch.URL, env fetch.Env) (fetch.Source, error) { return git.New(u, o.git, env) },
		"http": func(u *fetch.URL, env fetch.Env) (fetch.Source, error) { return fhttp.New(u, o.http, env) },
		"oci":  func(u *fetch.URL, env fetch.Env) (fetch.Source, error) { return oci.New(u, o.oci, env) },
		"s3":   func(u *fetch.URL, env fetch.Env) (fetch.Source, error) { return s3.New(u, o.s3, env) },
	}
}
