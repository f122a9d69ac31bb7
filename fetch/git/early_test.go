package git

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
	"github.com/ferrysync/ferry/internal/testkit"
)

// orderedPack is a commit's pack in an order git would not send: a blob
// before the tree that names it, and a blob as a delta against another;
// with big, a blob the index pass leaves to the export.
type orderedPack struct {
	pack   []byte
	commit plumbing.Hash
	want   map[string]fetchtest.File
	early  []string // the files the index pass can write
}

func newOrderedPack(t *testing.T, big bool) orderedPack {
	t.Helper()
	blob := func(s string) (plumbing.Hash, []byte) {
		return plumbing.ComputeHash(plumbing.BlobObject, []byte(s)), []byte(s)
	}
	encode := func(o interface {
		Encode(plumbing.EncodedObject) error
	}) (plumbing.Hash, []byte) {
		m := &plumbing.MemoryObject{}
		if err := o.Encode(m); err != nil {
			t.Fatal(err)
		}
		r, _ := m.Reader()
		b := make([]byte, m.Size())
		if _, err := r.Read(b); err != nil && len(b) > 0 {
			t.Fatal(err)
		}
		return m.Hash(), b
	}
	a, aData := blob("alpha\n")
	d, dData := blob("alpha\nmore\n")
	b, bData := blob("bravo\n")
	c, cData := blob("charlie\n")
	x, xData := blob("#!/bin/sh\n")
	link, linkData := blob("a.txt")
	l, lData := blob(strings.Repeat("large\n", largeObjectThreshold/6+1))
	sub, subData := encode(&object.Tree{Entries: []object.TreeEntry{
		{Name: "b.txt", Mode: filemode.Regular, Hash: b},
		{Name: "c.txt", Mode: filemode.Regular, Hash: c},
	}})
	entries := []object.TreeEntry{
		{Name: "a.txt", Mode: filemode.Regular, Hash: a},
		{Name: "d.txt", Mode: filemode.Regular, Hash: d},
		{Name: "link", Mode: filemode.Symlink, Hash: link},
		{Name: "sub", Mode: filemode.Dir, Hash: sub},
		{Name: "x.sh", Mode: filemode.Executable, Hash: x},
	}
	if big {
		entries = slices.Insert(entries, 1, object.TreeEntry{Name: "big.txt", Mode: filemode.Regular, Hash: l})
	}
	root, rootData := encode(&object.Tree{Entries: entries})
	sig := object.Signature{Name: "t", Email: "t@ferry.invalid", When: time.Unix(1700000000, 0).UTC()}
	commit, commitData := encode(&object.Commit{Author: sig, Committer: sig, Message: "m\n", TreeHash: root})

	// d.txt is a.txt and one more line: copy all of a, insert "more\n".
	delta := appendVarint(appendVarint(nil, uint64(len(aData))), uint64(len(dData)))
	delta = append(delta, 0x80|0x10, byte(len(aData)), 5)
	delta = append(delta, "more\n"...)

	op := orderedPack{
		commit: commit,
		want: map[string]fetchtest.File{
			"a.txt":     {Mode: 0o644, Key: a.String(), Data: aData},
			"d.txt":     {Mode: 0o644, Key: d.String(), Data: dData},
			"sub/b.txt": {Mode: 0o644, Key: b.String(), Data: bData},
			"sub/c.txt": {Mode: 0o644, Key: c.String(), Data: cData},
			"x.sh":      {Mode: 0o755, Key: x.String(), Data: xData},
		},
		early: []string{"a.txt", "d.txt", "link", "sub/b.txt", "sub/c.txt", "x.sh"},
	}
	p := newPack(9)
	if big {
		p = newPack(10)
		op.want["big.txt"] = fetchtest.File{Mode: 0o644, Key: l.String(), Data: lData}
		op.early = op.early[:1] // what comes after is the export's
	}
	p.object(1, len(commitData), nil, commitData)
	p.object(2, len(rootData), nil, rootData)
	p.object(3, len(bData), nil, bData) // before the tree that names it
	p.object(2, len(subData), nil, subData)
	p.object(3, len(cData), nil, cData)
	aOffset := p.Len()
	p.object(3, len(aData), nil, aData)
	if big {
		p.object(3, len(lData), nil, lData)
	}
	p.object(6, len(delta), ofsDelta(int64(p.Len()-aOffset)), delta) // d.txt
	p.object(3, len(xData), nil, xData)
	p.object(3, len(linkData), nil, linkData) // the walk waits for it
	op.pack = p.finish()
	return op
}

// ofsDelta encodes the distance back to an OFS_DELTA's base as git does.
func ofsDelta(rel int64) []byte {
	b := []byte{byte(rel & 0x7f)}
	for rel >>= 7; rel > 0; rel >>= 7 {
		rel--
		b = append([]byte{byte(0x80 | rel&0x7f)}, b...)
	}
	return b
}

// exportPack indexes pack as a first fetch does, with the index pass
// writing what it can (early) or not, then publishes its commit into a
// Writer bounded by l. It returns the Writer, the names the index pass
// wrote, and the error.
func exportPack(t *testing.T, op orderedPack, l fetch.Limits, early bool) (*fetchtest.Writer, []string, error) {
	t.Helper()
	u, err := fetch.Parse("git::http://127.0.0.1:1/r.git")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.LogBuffer{}
	s, err := New(u, Options{}, fetch.Env{StateDir: t.TempDir(), Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	w := fetchtest.NewWriter(l)
	repo := t.TempDir()
	dir := filepath.Join(repo, "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st := newStorage(osfs.New(repo), nil)
	var x *earlyExport
	if early {
		x = &earlyExport{s: s, ctx: t.Context(), w: w, tip: op.commit}
	}
	f := packFile(t, op.pack)
	x.open(st, f)
	p, err := indexPack(f, s.bounds, x)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.store(f, dir); err != nil {
		t.Fatal(err)
	}
	st.Reindex()
	ps, err := openPacked(t.Context(), st, p, dir, s.bounds)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.close()
	c, err := s.peelCommit(ps, op.commit)
	if err != nil {
		t.Fatal(err)
	}
	var wrote []string
	if x != nil {
		wrote = slices.Sorted(maps.Keys(x.written))
	}
	_, err = s.publish(t.Context(), ps, x, c, op.commit, "", w, time.Now(), true)
	return w, wrote, err
}

// TestIndexPassWritesWhatTheExportWould: the index pass writes the files
// whose blobs come after their tree, whole; the export writes the rest (a
// blob ahead of its tree, a delta) and the tree is the same either way,
// each file written once.
func TestIndexPassWritesWhatTheExportWould(t *testing.T) {
	for _, big := range []bool{false, true} {
		t.Run(map[bool]string{false: "small", true: "big"}[big], func(t *testing.T) {
			testIndexPassWrites(t, newOrderedPack(t, big))
		})
	}
}

func testIndexPassWrites(t *testing.T, op orderedPack) {
	for _, early := range []bool{false, true} {
		w, wrote, err := exportPack(t, op, fetch.Limits{}, early)
		if err != nil {
			t.Fatalf("early %t: %v", early, err)
		}
		if got := w.Files(); !maps.EqualFunc(got, op.want, func(a, b fetchtest.File) bool {
			return a.Mode == b.Mode && a.Key == b.Key && string(a.Data) == string(b.Data)
		}) {
			t.Errorf("early %t: wrote %v, want %v", early, got, op.want)
		}
		if got := w.Links(); len(got) != 1 || got["link"] != "a.txt" {
			t.Errorf("early %t: links %v, want link -> a.txt", early, got)
		}
		if w.Opened() != len(op.want) {
			t.Errorf("early %t: %d files opened, want each of %d once", early, w.Opened(), len(op.want))
		}
		if want := map[bool][]string{true: op.early}[early]; !slices.Equal(wrote, want) {
			t.Errorf("early %t: the index pass wrote %v, want %v", early, wrote, want)
		}
	}
}

// TestIndexPassFailsAsTheExportWould: a write refused in the index pass
// fails the export with the error the export would have met.
func TestIndexPassFailsAsTheExportWould(t *testing.T) {
	op := newOrderedPack(t, false)
	for _, l := range []fetch.Limits{{MaxFiles: 2}, {MaxFileSize: 8}, {MaxBytes: 12}} {
		_, _, want := exportPack(t, op, l, false)
		_, _, got := exportPack(t, op, l, true)
		if want == nil || got == nil || got.Error() != want.Error() || !fetch.IsPermanent(got) {
			t.Errorf("limits %+v: index pass and export failed with %v, export alone with %v", l, got, want)
		}
	}
}
