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
