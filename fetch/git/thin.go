package git

import (
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Thin packs make the store pay off. A depth-limited fetch makes the new
// commit shallow on the server side, which cuts it from the commit we
// already have; git then excludes our objects only when the client asked
// for a thin pack ("--objects-edge-aggressive"). go-git never asks (it
// lists thin-pack among its unsupported capabilities; global.go removes
// it), so without this every new commit would download its whole tree
// again (measured: 512 KiB for a 1-byte change).
//
// A thin pack holds deltas against objects outside it, so it cannot be
// stored as a pack file as is. go-git's parser resolves such deltas
// against a storage and writes the objects loose when the storage cannot
// take a whole pack: unpacked gives it exactly that view of the store.
// The first fetch into an empty store has nothing to be thin against and
// still goes straight to a pack file.

// looseStorer is the store without its PackfileWriter.
type looseStorer struct {
	storer.EncodedObjectStorer
	storer.ReferenceStorer
	storer.ShallowStorer
	storer.IndexStorer
	config.ConfigStorer
	storage.ModuleStorer
}

func unpacked(st *filesystem.Storage) storage.Storer {
	return &looseStorer{st, st, st, st, st, st}
}
