package signal

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// touched returns path's mode and modification time.
func touched(t *testing.T, path string) (os.FileMode, time.Time) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode(), fi.ModTime()
}

func TestTouchFileIsCreatedOnTheFirstPublishThenTouched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reload")
	n := newNotifiers(t, Options{TouchFile: path})
	// A strict umask must not hide the file from an app of another UID.
	old := syscall.Umask(0o077)
	n.NotifyFirst(Change{Source: "web", Revision: "r1"})
	syscall.Umask(old)
	if mode, _ := touched(t, path); mode != 0o644 {
		t.Errorf("created with mode %v, want -rw-r--r--", mode)
	}
	if err := os.WriteFile(path, []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	n.Notify(Change{Source: "web", Revision: "r2", Previous: "r1"})
	mode, mtime := touched(t, path)
	if mtime.Before(before) {
		t.Errorf("mtime %v after a change, want now", mtime)
	}
	if b, _ := os.ReadFile(path); string(b) != "kept" || mode != 0o600 {
		t.Errorf("touching changed the file: %q, %v", b, mode)
	}
	if got := n.total(t, "touch:"+path, resultOK); got != 2 {
		t.Errorf("ok = %v, want 2", got)
	}
	if want := `level=INFO msg="touched file" touch_file=` + path + ` source=web revision=r2`; !strings.Contains(n.logs.String(), want) {
		t.Errorf("logs lack %q:\n%s", want, n.logs)
	}
}

func TestTouchFileNeverFollowsASymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(victim, past, past); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"link": victim, "dangling": filepath.Join(dir, "created-through-link")} {
		path := filepath.Join(dir, name)
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		n := newNotifiers(t, Options{TouchFile: path})
		n.Notify(Change{Source: "web", Revision: "r2"})
		if got := n.total(t, "touch:"+path, resultFailed); got != 1 {
			t.Errorf("%s: failed = %v, want 1", name, got)
		}
		if want := "touch " + path + ": is a symbolic link, and ferry follows none it did not create"; !strings.Contains(n.logs.String(), want) {
			t.Errorf("%s: logs lack %q:\n%s", name, want, n.logs)
		}
	}
	if _, mtime := touched(t, victim); !mtime.Equal(past) {
		t.Errorf("the link's target was touched: %v", mtime)
	}
	if _, err := os.Lstat(filepath.Join(dir, "created-through-link")); !os.IsNotExist(err) {
		t.Errorf("a dangling link's target was created: %v", err)
	}
}

func TestTouchFileNamesWhatIsWrongWithItsPlace(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "missing", "reload"): "directory " + filepath.Join(dir, "missing") + " does not exist",
		dir + "/.":                              "is a directory",
		fifo:                                    "touch " + fifo + ": ",
	} {
		err := touchFile(path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("touchFile(%s) = %v, want %q", path, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("the missing directory was created")
	}
}
