package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// notify measures how soon the app hears of a change once ferry swapped
// the link, on the large repository: ferry run notifies a receiver of this
// program's; a commit changing one file is pushed, POST /sync makes ferry
// poll at once, inotify on the root tells when ROOT/current is renamed
// over, and the receiver when the notify's POST arrives. What runs between
// the two (bookkeeping, GC of old revisions) is what the app waits for.
func (b *bench) notify(ctx context.Context, dir string) error {
	tree, _, err := b.repo(ctx, "large")
	if err != nil {
		return err
	}
	// A copy of its own: the pushes must not change the repository the
	// other scenarios measure.
	bare := filepath.Join(b.repos, "notify.git")
	if _, err := b.git(ctx, "clone", "-q", "--bare", filepath.Join(b.repos, "large.git"), bare); err != nil {
		return err
	}
	defer os.RemoveAll(bare)
	work := filepath.Join(dir, "work")
	if _, err := b.git(ctx, "clone", "-q", bare, work); err != nil {
		return err
	}

	heard := make(chan time.Time, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		heard <- time.Now()
	})}
	go srv.Serve(ln)
	defer srv.Close()

	root := filepath.Join(dir, "ferry")
	args := []string{"--source", "git::" + b.origin.url + "/notify.git", "--period", "1h", "--notify-url", "http://" + ln.Addr().String() + "/reload"}
	d, err := b.startDaemon(root, root+".log", true, args...)
	if err != nil {
		return err
	}
	defer d.stop()
	if _, err := d.waitReady(ctx, readyLimit); err != nil {
		return err
	}

	type reading struct{ toSwap, toNotify time.Duration }
	var readings []reading
	for i := range b.warmups + b.runs {
		file := filepath.Join(work, filepath.FromSlash(tree.Name(0)))
		if err := os.WriteFile(file, fmt.Appendf(nil, "change %d\n", i), 0o644); err != nil {
			return err
		}
		if _, err := b.git(ctx, "-C", work, "commit", "-q", "-a", "-m", fmt.Sprint("change ", i)); err != nil {
			return err
		}
		if _, err := b.git(ctx, "-C", work, "push", "-q", "origin", "HEAD"); err != nil {
			return err
		}
		swapped, stop, err := watchSwap(root, "current")
		if err != nil {
			return err
		}
		start := time.Now()
		resp, err := http.Post("http://"+d.addr+"/sync", "", nil)
		if err == nil {
			resp.Body.Close()
		}
		var swap, note time.Time
		timeout := time.After(2 * time.Minute)
		for err == nil && (swap.IsZero() || note.IsZero()) {
			select {
			case swap = <-swapped:
			case note = <-heard:
			case <-timeout:
				err = fmt.Errorf("no swap and notify within 2 minutes (log: %s)", tail(d.log.Name(), 5))
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		stop()
		if err != nil {
			return err
		}
		if i >= b.warmups {
			readings = append(readings, reading{swap.Sub(start), note.Sub(swap)})
		}
	}
	fmt.Fprintf(b.out, "ferry: %s run --root DIR --log-format json %s --http-addr 127.0.0.1:PORT\n", b.ferry, shellLine(args))
	fmt.Fprintf(b.out, "each run: one file changed, committed and pushed; then POST /sync; %d runs after %d warm-up\n", b.runs, b.warmups)
	t := newTable("", "ferry run")
	t.add("POST /sync -> link swapped (inotify)", ms.cell(of(readings, func(r reading) float64 { return float64(r.toSwap) })))
	t.add("link swapped -> notify received", msFine.cell(of(readings, func(r reading) float64 { return float64(r.toNotify) })))
	t.print(b.out)
	return nil
}

// watchSwap reports, once, when name is created in or renamed into dir:
// a publish's link swap.
func watchSwap(dir, name string) (<-chan time.Time, func(), error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, nil, err
	}
	events := os.NewFile(uintptr(fd), "inotify")
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		events.Close()
		return nil, nil, err
	}
	at := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := events.Read(buf)
			if err != nil {
				return // closed by stop
			}
			now := time.Now()
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
				raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+nameLen]
				if string(bytes.TrimRight(raw, "\x00")) == name {
					at <- now
					return
				}
				off += unix.SizeofInotifyEvent + nameLen
			}
		}
	}()
	return at, func() { events.Close() }, nil
}
