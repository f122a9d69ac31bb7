package git

import (
	"net/http"
	"slices"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
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

		// The SSH dialer (see dial.go): go-git dials SSH without the
		// fetch's context and reads it without bound; its proxy option,
		// resolved through x/net/proxy's registry of URL schemes, is the
		// only way to reach the connection.
		proxy.RegisterDialerType(dialScheme, newDialer)

		// HTTP(S) through a client that counts response bodies against the
		// budget of the request's context (see limit.go): go-git picks the
		// transport of a URL scheme from a process-wide table. The client is
		// go-git's default but for its RoundTripper; go-git would clone the
		// RoundTripper as an *http.Transport only for per-endpoint TLS or
		// proxy options, which ferry does not set for HTTP.
		c := githttp.NewClient(&http.Client{Transport: httpTransport})
		client.InstallProtocol("http", c)
		client.InstallProtocol("https", c)

		// git:// through ferry's own transport (see gitproto.go): go-git's
		// dials with net.Dial, which neither the meter nor the deadline
		// reach.
		client.InstallProtocol("git", gitTransport{})
	})
}

// httpTransport carries every HTTP(S) request of a git source, go-git's
// and ferry's own protocol v2 requests (v2.go) alike: one connection pool,
// the default TLS and proxy settings, each body counted on its meter.
var httpTransport http.RoundTripper = meteredTransport{base: http.DefaultTransport}
