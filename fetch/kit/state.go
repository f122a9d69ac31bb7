package kit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// StateDir creates dir, a source's private state directory, 0700, and
// its missing parents 0755 whatever the umask: a parent is
// ROOT/.ferry/NAME, which the published revisions live under, and an app
// running as another user must be able to reach them. A directory that
// exists is left as it is.
func StateDir(dir string) error {
	if err := mkdirShared(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

func mkdirShared(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("%s is not a directory", dir)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := mkdirShared(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o755)
}

// StateFile is a small JSON document a source keeps between syncs in its
// state directory: validators, the ETag behind a revision. Losing it costs
// one unconditional request, never correctness, so a failed Save is the
// caller's to log, not to fail a sync on.
type StateFile string

// Load reads the document into v. A missing file is fs.ErrNotExist.
func (f StateFile) Load(v any) error {
	data, err := os.ReadFile(string(f))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("state file %s: %w", f, err)
	}
	return nil
}

// Save replaces the document with v, atomically: a temporary file in the
// same directory, renamed over it. The directory is created with StateDir.
func (f StateFile) Save(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dir := filepath.Dir(string(f))
	if err := StateDir(dir); err != nil {
		return fmt.Errorf("state file %s: %w", f, err)
	}
	tmp, err := os.CreateTemp(dir, TempPrefix+filepath.Base(string(f))+"-*")
	if err != nil {
		return fmt.Errorf("state file %s: %w", f, err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), string(f))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("state file %s: %w", f, err)
	}
	return nil
}

// TempPrefix starts the name of every temporary file a source writes in its
// state directory, so that what a killed process left can be found and
// removed (RemoveTemp).
const TempPrefix = ".tmp-"

// RemoveTemp removes the temporary files a killed process left in dir.
func RemoveTemp(dir string) {
	leftovers, _ := filepath.Glob(filepath.Join(dir, TempPrefix+"*"))
	for _, p := range leftovers {
		os.Remove(p)
	}
}
