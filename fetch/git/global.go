package git

import (
	"slices"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/net/proxy"
)

// go-git and golang.org/x/net/proxy keep their configuration in package
// variables shared by the whole process. ferry changes them here and
// nowhere else, once, before its first fetch: New calls setupGoGit. ferry
// is the only user of go-git in the process.
var setup sync.Once

func setupGoGit() {
	setup.Do(func() {
		// Thin packs (see thin.go): go-git lists thin-pack among the
		// capabilities it refuses. Without it a depth-limited fetch
		// downloads the whole tree of every new commit again; every fetch
		// into a store that holds objects resolves a thin pack against it.
		transport.UnsupportedCapabilities = slices.DeleteFunc(slices.Clone(transport.UnsupportedCapabilities),
			func(c capability.Capability) bool { return c == capability.ThinPack })

		// The SSH dialer (see deadline.go): go-git dials SSH without the
		// fetch's context; its proxy option, resolved through x/net/proxy's
		// registry of URL schemes, is the only way to reach the connection.
		proxy.RegisterDialerType(deadlineScheme, newDeadlineDialer)
	})
}
