// Package procmem hands memory the process maps but no longer needs back
// to the operating system.
package procmem

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReleaseImage unmaps from this process the pages of its own executable's
// read-only segments: machine code and constant data. They stay in the
// page cache, and what runs next maps its pages again from there (a minor
// fault, no disk read while the cache holds them).
//
// A sidecar runs most of its code once, in package initialization and in
// a publish, and then idles on a small loop; the kernel maps 64 KiB
// around each page touched, so without this the resident set keeps some
// 18 MiB of a 30 MB binary for good.
//
// Only mappings of the executable without write permission and without a
// page of their own (anonymous, in /proc/self/pagemap) are touched:
// MADV_DONTNEED on a private mapping throws away what was written there,
// which is what a writable mapping holds, and what a read-only one holds
// after the loader relocated it (RELRO in a PIE or cgo build), a debugger
// set a breakpoint in it or a uprobe was attached. (A breakpoint or uprobe set between the
// check and the release would be lost: the probe stops firing, nothing
// else; there is no way to make the two one step.)
func ReleaseImage() error {
	ms, err := imageMappings()
	if err != nil {
		return fmt.Errorf("release image: %w", err)
	}
	for _, m := range ms {
		if _, _, errno := syscall.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return fmt.Errorf("release image: madvise %x-%x: %w", m.start, m.end, errno)
		}
	}
	return nil
}

// imageMappings returns the mappings of the executable that the process
// never wrote to: no write permission, no anonymous page. Which mappings
// are the executable's is read once (exeMappings); whether one holds a
// page of the process's own is read at each call, since a debugger or a
// uprobe may have written one since.
func imageMappings() ([]mapping, error) {
	exe, err := exeMappings()
	if err != nil {
		return nil, err
	}
	pagemap, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, err
	}
	defer pagemap.Close()
	var ro []mapping
	for _, m := range exe {
		if m.writable {
			continue
		}
		written, err := holdsAnonymous(pagemap, m)
		if err != nil {
			return nil, err
		}
		if !written {
			ro = append(ro, m)
		}
	}
	return ro, nil
}

// exeMappings returns the executable's mappings, read from
// /proc/self/maps once it succeeds: the loader mapped them before the
// process ran and nothing maps the executable again. A failed read (too
// many open files, say) is tried again at the next call.
func exeMappings() ([]mapping, error) {
	exeRead.mu.Lock()
	defer exeRead.mu.Unlock()
	if exeRead.ms == nil {
		ms, err := readExeMappings()
		if err != nil {
			return nil, err
		}
		exeRead.ms = ms
	}
	return exeRead.ms, nil
}

// exeRead is what exeMappings read.
var exeRead struct {
	mu sync.Mutex
	ms []mapping
}

// readExeMappings reads the executable's mappings. The executable is told
// by the file mapped where this very function's code is, not by stat(2)
// of /proc/self/exe: under overlayfs, a container's root, the two name
// different devices.
func readExeMappings() ([]mapping, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	var all []mapping
	for line := range bytes.Lines(maps) {
		if m, ok := parseMapping(line); ok {
			all = append(all, m)
		}
	}
	pc := reflect.ValueOf(readExeMappings).Pointer()
	i := slices.IndexFunc(all, func(m mapping) bool { return m.start <= pc && pc < m.end })
	if i < 0 || all[i].inode == 0 {
		return nil, fmt.Errorf("no file mapped at %#x, where the code runs", pc)
	}
	exe := all[i]
	return slices.DeleteFunc(all, func(m mapping) bool {
		return m.inode != exe.inode || m.major != exe.major || m.minor != exe.minor
	}), nil
}

// holdsAnonymous reports whether a page of m is the process's own: present
// and not a file page, or swapped out (pagemap's bits 63, 61 and 62). A
// read-only mapping of a file holds one only where it was written before
// it was made read-only, or by a debugger or a uprobe. Reading pagemap
// walks m's page tables only, where /proc/self/smaps walks every mapping's
// (1-2 ms at each release).
func holdsAnonymous(pagemap *os.File, m mapping) (bool, error) {
	page := uintptr(os.Getpagesize())
	var buf [8 << 10]byte
	for first, last := m.start/page, m.end/page; first < last; {
		n := min(last-first, uintptr(len(buf)/8))
		if _, err := pagemap.ReadAt(buf[:n*8], int64(first*8)); err != nil {
			return false, err
		}
		for e := range n {
			v := binary.LittleEndian.Uint64(buf[e*8:])
			present, swapped, file := v&(1<<63) != 0, v&(1<<62) != 0, v&(1<<61) != 0
			if present && !file || swapped {
				return true, nil
			}
		}
		first += n
	}
	return false, nil
}

// mapping is one line of /proc/self/maps, as much of it as ReleaseImage
// needs.
type mapping struct {
	start, end   uintptr
	writable     bool
	major, minor uint32
	inode        uint64
}

// parseMapping reads "START-END PERMS OFFSET MAJOR:MINOR INODE [PATH]".
func parseMapping(line []byte) (mapping, bool) {
	f := bytes.Fields(line)
	if len(f) < 5 {
		return mapping{}, false
	}
	addr := bytes.SplitN(f[0], []byte("-"), 2)
	dev := bytes.SplitN(f[3], []byte(":"), 2)
	if len(addr) != 2 || len(dev) != 2 || len(f[1]) < 2 {
		return mapping{}, false
	}
	start, err1 := strconv.ParseUint(string(addr[0]), 16, 64)
	end, err2 := strconv.ParseUint(string(addr[1]), 16, 64)
	major, err3 := strconv.ParseUint(string(dev[0]), 16, 32)
	minor, err4 := strconv.ParseUint(string(dev[1]), 16, 32)
	inode, err5 := strconv.ParseUint(string(f[4]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil || end <= start {
		return mapping{}, false
	}
	return mapping{
		start: uintptr(start), end: uintptr(end),
		writable: f[1][1] != '-',
		major:    uint32(major), minor: uint32(minor),
		inode: inode,
	}, true
}
