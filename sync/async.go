package sync

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	gosync "sync"

	"github.com/ferrysync/ferry/fetch"
)

// Creating a file is the cost of a first publish: on an ext4 volume here,
// 200-300 µs of kernel time per open(O_CREAT), against a few µs to read a
// 10 KB blob. Sources write one file at a time (git's object store is not
// safe for concurrent use; a tar is one stream), so the Stage reads a
// small file into memory at once, in the caller's goroutine, and creates,
// writes and stamps it in the background, several at a time. A larger
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
type async struct {
	slots   chan struct{}
	pending gosync.WaitGroup

	mu  gosync.Mutex
	err error // the first failure
}

func newAsync() *async { return &async{slots: make(chan struct{}, asyncWorkers)} }

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

// writeAsync creates rel at dst with data in the background and records it
// when done; buf goes back to its pool then.
func (st *Stage) writeAsync(rel, dst string, mode fs.FileMode, key string, buf *[]byte, n int) {
	a := st.async
	a.slots <- struct{}{}
	a.pending.Add(1)
	go func() {
		defer func() {
			putBuffer(buf)
			<-a.slots
			a.pending.Done()
		}()
		data := (*buf)[:n]
		sum := sha256.Sum256(data)
		fi, err := writeNew(dst, mode, data)
		if err != nil {
			a.fail(fmt.Errorf("stage %s: %w", rel, fsError(err)))
			return
		}
		st.bytesWritten.Add(int64(n))
		st.record(rel, entry{Mode: fi.Mode().Perm(), Key: key, Size: int64(n), Sum: hex.EncodeToString(sum[:]), stamp: stampOf(fi)}, true)
	}()
}

// writeNew creates a file at dst holding data, with mode, and returns its
// state once nothing more will change it.
func writeNew(dst string, mode fs.FileMode, data []byte) (fs.FileInfo, error) {
	f, err := createFile(dst, mode)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(data)
	var fi fs.FileInfo
	if err == nil {
		fi, err = settle(f, mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return nil, err
	}
	return fi, nil
}
