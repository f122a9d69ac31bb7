package fetch

import (
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// SemverPrefix starts a tag (or git ref) option that selects the highest
// version in a range rather than naming one: "semver:>=1.2.0 <2".
const SemverPrefix = "semver:"

// HighestVersion returns the name among names that is the highest version in
// constraint, and false when none is. A name may start with "v"; one that
// is not a version is ignored. Prereleases match only a range that names
// one (Masterminds/semver's rule: "^1.2.0-0" takes them). Build metadata
// does not order versions; between two that differ only by it, the name
// sorting last wins, so the choice is the same on every pod. OCI tags
// cannot hold "+": toVersion maps a name to the version it stands for
// ("1.2.3_build.5" is "1.2.3+build.5", as Helm and Flux write it).
func HighestVersion(constraint *semver.Constraints, names []string, toVersion func(string) string) (string, bool) {
	var best string
	var bestV *semver.Version
	for _, n := range names {
		v, err := semver.NewVersion(toVersion(n))
		if err != nil || !constraint.Check(v) {
			continue
		}
		if c := compareVersions(v, bestV); c > 0 || c == 0 && n > best {
			best, bestV = n, v
		}
	}
	return best, bestV != nil
}

func compareVersions(v, best *semver.Version) int {
	if best == nil {
		return 1
	}
	return v.Compare(best)
}

// ParseVersionRange reads the RANGE of "semver:RANGE".
func ParseVersionRange(option, value string) (*semver.Constraints, error) {
	r := strings.TrimSpace(strings.TrimPrefix(value, SemverPrefix))
	c, err := semver.NewConstraint(r)
	if err != nil {
		return nil, fmt.Errorf("%s=%s: not a version range: %v", option, value, err)
	}
	return c, nil
}
