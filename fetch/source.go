package fetch

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
)

// Source brings one origin's content into a revision.
type Source interface {
	// Fetch compares the origin with prev, the published revision ("" when
	// nothing is published yet). When they are the same it returns prev and
	// writes nothing. Otherwise it writes the whole new tree through w and
	// returns the new revision ID: a short string of [A-Za-z0-9._-] that
	// identifies the content (a commit SHA, a digest).
	Fetch(ctx context.Context, prev string, w Writer) (rev string, err error)
}

// Writer receives the entries of a new revision. Names are slash-separated
// paths relative to the revision root; the Writer refuses names that would
// escape it and enforces the size and count limits.
type Writer interface {
	// WriteFile creates name with the given permission bits. key identifies
	// the content within this source (a git blob hash, an S3 ETag, a
	// sha256); when the previous revision holds name with the same key and
	// mode, the Writer reuses that file and open is never called. An empty
	// key disables reuse.
	WriteFile(name string, mode fs.FileMode, key string, open Opener) error
	// Symlink creates name pointing at target, which must resolve inside
	// the revision.
	Symlink(name, target string) error
	// Mkdir creates the directory name and any missing parents.
	Mkdir(name string) error
}

// Opener opens the content of one file. The Writer closes what it returns.
type Opener func() (io.ReadCloser, error)

// Sized is a body that knows its length before it is read, such as an S3
// object's, announced by its Content-Length. A Writer may size its buffer
// by it. It is a hint only: the body is read to its end and bounded all the
// same.
type Sized interface {
	Size() int64
}

// Env is what a source gets from the daemon when it is built.
type Env struct {
	// StateDir is a directory private to the source that survives restarts
	// (it lives on the shared volume): an object store, saved validators.
	StateDir string
	// Logger is already scoped to the source.
	Logger *slog.Logger
	// Limits are the publish engine's limits on one revision, with defaults
	// applied; the Writer enforces them whatever the source does.
	Limits Limits
	// Root is the directory revisions are published under (--root), so a
	// source can refuse to read its own output.
	Root string
}

// OriginReporter is a Source whose revision is not the origin's own name
// for what it fetched: a git //subdir source names its revision after the
// subdirectory's tree, taken out of a commit. OriginRevision returns what
// the origin calls the revision the last Fetch returned (the commit), for
// /status and the notify body, so people can trace a publish to its cause.
type OriginReporter interface {
	OriginRevision() string
}
