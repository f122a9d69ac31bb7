package git

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
)

// auth builds the credentials for one Fetch from the files, read afresh.
// It returns a nil AuthMethod for anonymous access. s.opts holds only what
// the URL's scheme uses (forScheme).
func (s *Source) auth(ctx context.Context) (transport.AuthMethod, error) {
	switch {
	case s.app != nil:
		tok, err := s.app.get(ctx)
		if err != nil {
			return nil, fmt.Errorf("git %s: %w", s.display, err)
		}
		return &githttp.BasicAuth{Username: appTokenUser, Password: tok}, nil
	case s.opts.PasswordFile != "":
		pass, err := kit.ReadSecret(s.opts.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("git password file: %w", err)
		}
		// Hosts take any user name with a token; an empty one is refused by
		// some.
		return &githttp.BasicAuth{Username: cmp.Or(s.urlUser, s.opts.Username, "git"), Password: pass}, nil
	case isHTTP(s.scheme) && s.urlUser != "":
		// The URL's user alone, as go-git sends it when it is in the URL.
		return &githttp.BasicAuth{Username: s.urlUser}, nil
	case s.scheme != "ssh":
		return nil, nil
	}
	signer, err := readSigner(s.opts.SSHKeyFile)
	if err != nil {
		return nil, fmt.Errorf("git SSH key file: %w", err)
	}
	// The user is the URL's (git@host): Username is for HTTP, and may be
	// shared with HTTPS sources of the same process. The connection is
	// bounded by the dialer (dial.go).
	a := &sshAuth{ssh.ClientConfig{User: cmp.Or(s.urlUser, "git"), Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()}}
	if !s.opts.InsecureIgnoreHostKey {
		db, err := hostKeyDB(s.opts.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("git known_hosts file: %w", err)
		}
		a.cfg.HostKeyCallback = db.HostKeyCallback()
		// Offer only the key types known_hosts holds for this host, so a
		// server with several keys is checked against the one we know.
		a.cfg.HostKeyAlgorithms = db.HostKeyAlgorithms(s.hostPort)
	}
	return a, nil
}

// readSigner parses the SSH private key file. Encrypted keys are refused:
// a passphrase would be one more secret to mount, with nothing gained.
func readSigner(path string) (ssh.Signer, error) {
	b, err := kit.ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(b)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fetch.Permanent(fmt.Errorf("%s is encrypted with a passphrase; give an unencrypted key", path))
	}
	if err != nil {
		return nil, fetch.Permanent(fmt.Errorf("%s: not a private key: %w", path, err))
	}
	return signer, nil
}

// hostKeyDB reads the known_hosts file. go-git skips a file that does not
// exist; here it is an error.
func hostKeyDB(path string) (interface {
	HostKeyCallback() ssh.HostKeyCallback
	HostKeyAlgorithms(string) []string
}, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := gitssh.NewKnownHostsDb(path)
	if err != nil {
		return nil, fetch.Permanent(fmt.Errorf("%s: %w", path, err))
	}
	return db, nil
}

// sshAuth hands go-git a copy of cfg for each connection (go-git writes
// to it). go-git's own PublicKeys cannot narrow the host key algorithms to
// those known_hosts holds.
type sshAuth struct{ cfg ssh.ClientConfig }

var _ gitssh.AuthMethod = (*sshAuth)(nil)

func (a *sshAuth) Name() string   { return "ssh-public-keys" }
func (a *sshAuth) String() string { return "user: " + a.cfg.User + ", name: " + a.Name() }

func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	cfg := a.cfg
	return &cfg, nil
}
