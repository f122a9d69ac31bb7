package sync

import (
	"strings"
	"testing"
)

func TestRevisionNamesAreBoundedAndPlain(t *testing.T) {
	for rev, want := range map[string]bool{
		"0123abcd":                    true,
		"v1.2.3-rc_1":                 true,
		strings.Repeat("a", maxRev):   true,
		strings.Repeat("a", maxRev+1): false,
		"":                            false,
		".hidden":                     false,
		"a/b":                         false,
		"a b":                         false,
		"a\n":                         false,
		"é":                           false,
	} {
		if got := validRev(rev); got != want {
			t.Errorf("validRev(%.20q) = %v, want %v", rev, got, want)
		}
	}
}

// TestValidNameRefusesFerrysOwnNames: a source's name is a link in the
// root and a directory under ROOT/.ferry; the names ferry keeps for itself
// there (the lock file, and the dot names a start clears away as leftovers
// of a killed process) cannot be a source's.
func TestValidNameRefusesFerrysOwnNames(t *testing.T) {
	for name, want := range map[string]bool{
		"current": true, "app.conf": true, "a_b-c.1": true,
		"lock": false, ".ferry": false, ".generations": false, ".": false, "..": false,
		".link-x": false, ".stage-x": false, ".tmp-x": false, "": false, "a/b": false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}
