package sync

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	gosync "sync"

	"github.com/ferrysync/ferry/fetch"
)

// Creating a file is the cost of a first publish: on an ext4 volume here,
// 200-300 µs of kernel time per open(O_CREAT), against a few µs to read a
// 10 KB blob. Sources write one file at a time (git's object store is not
// safe for concurrent use; a tar is one stream), so the Stage reads a
// small file into memory at once, in the caller's goroutine, and creates,
// writes and stamps it in the background, several directories at a time
// (async). A larger
// file is written in place, as it is read: memory stays bounded by
// asyncWorkers files of at most smallFile bytes.
const (
	smallFile    = 256 << 10
	asyncWorkers = 8
)

// A file is read into a buffer of the smallest class first, the size most
// config files fit, and only as it fills into one of the next class: the
// buffers of the writes in flight, and of the reads of a source that
// fetches several files at once (S3), are most of what the peak memory of
// a first sync holds. A body that tells its size (fetch.Sized) goes
// straight into the smallest class that holds it whole. The classes are
// powers of two, so that no buffer is more than twice what it holds; the
// last is one byte over smallFile, so that a full one says the file is not
// small.
var bufferClasses = [...]int{16 << 10, 32 << 10, 64 << 10, 128 << 10, smallFile + 1}

var bufferPools [len(bufferClasses)]gosync.Pool

func init() {
	for i, size := range bufferClasses {
		bufferPools[i].New = func() any { b := make([]byte, size); return &b }
	}
}

// getBuffer returns a buffer of class i.
func getBuffer(i int) *[]byte { return bufferPools[i].Get().(*[]byte) }

// putBuffer returns b to the pool of its class.
func putBuffer(b *[]byte) {
	for i, size := range bufferClasses {
		if len(*b) == size {
			bufferPools[i].Put(b)
			return
		}
	}
}

// firstClass returns the class of the buffer to read r into first: the
// smallest that holds all of r with a byte to spare, when r tells its size,
// so that a full buffer still means more to read.
func firstClass(r io.Reader) int {
	sized, ok := r.(fetch.Sized)
	if !ok {
		return 0
	}
	size := sized.Size()
	for i, c := range bufferClasses {
		if size < int64(c) {
			return i
		}
	}
	return len(bufferClasses) - 1
}

// async tracks the background writes of a Stage.
//
// Files of one directory are written one after the other, by one
// goroutine, those of different directories at once: creating a file
// holds its directory's lock, and eight writers creating in the same
// directory (a tree is written in order, directory by directory) spent
// their time spinning on it in the kernel (rwsem_spin_on_owner under
// openat). On this machine's ext4 (no journal) with inodes freed in the
// last seconds, when each creation is slow, that spinning made a cold
// publish of the large benchmark repository cost 3.1-3.6 s of kernel time
// against git clone's 1.9-2.8 s; writing by directory, 2.4-3.0 s, and
// 20% less wall time. With creation fast, both ways are alike, and so is a
// tree of 5,000 files in one directory.
type async struct {
	slots   chan struct{} // one per file held in memory, queued or being written
	pending gosync.WaitGroup

	mu     gosync.Mutex
	err    error               // the first failure
	queued map[string][]func() // by directory, while one of its files is written
}

func newAsync() *async {
	return &async{slots: make(chan struct{}, asyncWorkers), queued: map[string][]func(){}}
}

// run runs write in the background, after the writes queued before it in
// the same directory.
func (a *async) run(dir string, write func()) {
	a.slots <- struct{}{}
	a.pending.Add(1)
	a.mu.Lock()
	if q, busy := a.queued[dir]; busy {
		a.queued[dir] = append(q, write)
		a.mu.Unlock()
		return
	}
	a.queued[dir] = nil
	a.mu.Unlock()
	go func() {
		for write != nil {
			write()
			<-a.slots
			a.pending.Done()
			write = a.next(dir)
		}
	}()
}

// next takes the next write queued in dir, or nil when there is none: the
// directory is free then.
func (a *async) next(dir string) func() {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.queued[dir]
	if len(q) == 0 {
		delete(a.queued, dir)
		return nil
	}
	write := q[0]
	q[0] = nil // the queue's array must not keep a buffer written already
	a.queued[dir] = q[1:]
	return write
}

// failed returns the first error of a background write.
func (a *async) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *async) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		a.err = err
	}
}

// wait returns once every background write is done, with the first error.
func (a *async) wait() error {
	a.pending.Wait()
	return a.failed()
}

// readSmall takes the file from the source. A small one is read whole, and
// written in the background; ok is false for a larger one, which the
// caller writes from r as it reads it. Bytes count against the limits as
// they are read.
func (st *Stage) readSmall(rel string, r io.Reader) (buf *[]byte, n int, ok bool, err error) {
	class := firstClass(r)
	buf = getBuffer(class)
	n, err = io.ReadFull(r, *buf)
	for class++; err == nil && class < len(bufferClasses); class++ {
		// The buffer is full: read on into one of the next class.
		larger := getBuffer(class)
		copy(*larger, (*buf)[:n])
		putBuffer(buf)
		buf = larger
		var more int
		more, err = io.ReadFull(r, (*buf)[n:])
		n += more
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		err = nil
	case err == nil: // more than smallFile bytes: not small
		return buf, n, false, nil
	default:
		putBuffer(buf)
		return nil, 0, false, fmt.Errorf("stage %s: %w", rel, err)
	}
	if int64(n) > st.limits.MaxFileSize {
		putBuffer(buf)
		return nil, 0, false, refuse(rel, "file exceeds %d bytes (max-file-size)", st.limits.MaxFileSize)
	}
	if err := st.addBytes(rel, int64(n)); err != nil {
		putBuffer(buf)
		return nil, 0, false, err
	}
	return buf, n, true, nil
}

// writeAsync creates rel with data in the background and records it when
// done; buf goes back to its pool then.
func (st *Stage) writeAsync(rel string, mode fs.FileMode, key string, buf *[]byte, n int) {
	a := st.async
	a.run(path.Dir(rel), func() {
		defer putBuffer(buf)
		data := (*buf)[:n]
		sum := sha256.Sum256(data)
		perm, stamp, err := writeNew(st.root, rel, mode, data)
		if err != nil {
			a.fail(fmt.Errorf("stage %s: %w", rel, fsError(err)))
			return
		}
		st.bytesWritten.Add(int64(n))
		st.record(rel, entry{Mode: perm, Key: key, Size: int64(n), Sum: hex.EncodeToString(sum[:]), stamp: stamp}, true)
	})
}

// writeNew creates the file rel inside dir holding data, with mode, and
// returns its permissions and stamp once nothing more will change it.
func writeNew(dir *os.File, rel string, mode fs.FileMode, data []byte) (fs.FileMode, stamp, error) {
	f, err := createBeneath(dir, rel, mode)
	if err != nil {
		return 0, stamp{}, err
	}
	_, err = f.Write(data)
	var perm fs.FileMode
	var st stamp
	if err == nil {
		perm, st, err = f.settle(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		removeBeneath(dir, rel)
		return 0, stamp{}, err
	}
	return perm, st, nil
}
