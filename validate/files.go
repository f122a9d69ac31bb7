package validate

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// checkFiles parses the files of the tree under dir that a check needs, in
// lexical order, and stops at the first refusal. A symlink is checked
// under its own name as the file it points at (the publish engine keeps
// every link inside the tree); a link to a directory is not followed, since
// the directory is walked anyway.
func (ch *Checker) checkFiles(ctx context.Context, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("validate: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return fmt.Errorf("validate: %w", err)
		}
		rel = filepath.ToSlash(rel)
		var rules []*schemaRule
		for _, r := range ch.schemas {
			if r.matches(rel) {
				rules = append(rules, r)
			}
		}
		f := formatOf(rel)
		if len(rules) == 0 && (!ch.syntax || f == formatNone) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("validate %s: %w", rel, err)
			}
			if !fi.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		if f == formatNone {
			return &Error{Check: CheckSchema, File: rel, Detail: fmt.Sprintf("schema %s applies, but the file is not .json, .yaml, .yml or .toml", rules[0].file)}
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("validate %s: %w", rel, err)
		}
		docs, err := decode(f, rel, data)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if err := r.check(rel, docs); err != nil {
				return err
			}
		}
		return nil
	})
}
