package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
)

// auth builds the credentials for one Fetch from the files, read afresh.
// It returns a nil AuthMethod for anonymous access.
func (s *Source) auth(ctx context.Context) (transport.AuthMethod, error) {
	switch {
	case isHTTP(s.scheme) && s.opts.PasswordFile != "":
		pass, err := readSecret(s.opts.PasswordFile)
		if err != nil {
			return nil, err
		}
		user := s.urlUser
		if user == "" {
			user = s.opts.Username
		}
		if user == "" {
			// Hosts take any user name with a token; an empty one is refused
			// by some.
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: pass}, nil
	case isHTTP(s.scheme) && s.urlUser != "":
		// The URL's user alone, as go-git sends it when it is in the URL.
		return &githttp.BasicAuth{Username: s.urlUser}, nil
	case s.scheme == "ssh":
		signer, err := readSigner(s.opts.SSHKeyFile)
		if err != nil {
			return nil, err
		}
		// The user is the URL's (git@host): --git-username is for HTTP, and
		// may be shared with HTTPS sources of the same process.
		user := s.urlUser
		if user == "" {
			user = "git"
		}
		a := &sshAuth{user: user, signer: signer}
		if s.opts.InsecureIgnoreHostKey {
			a.hostKey = ssh.InsecureIgnoreHostKey()
		} else {
			db, err := hostKeyDB(s.opts.KnownHostsFile)
			if err != nil {
				return nil, err
			}
			a.hostKey = db.HostKeyCallback()
			// Offer only the key types known_hosts holds for this host, so a
			// server with several keys is checked against the one we know.
			a.algorithms = db.HostKeyAlgorithms(s.hostPort)
		}
		if d, ok := ctx.Deadline(); ok {
			a.timeout = max(time.Until(d), time.Millisecond) // 0 would mean none
		}
		return a, nil
	}
	return nil, nil
}

// readSecret reads the password or token file by the kit's rule.
func readSecret(path string) (string, error) {
	secret, err := kit.ReadSecret(path)
	if err != nil {
		return "", fmt.Errorf("--git-password-file: %w", err)
	}
	return secret, nil
}

// readSigner parses the SSH private key file. Encrypted keys are refused:
// a passphrase would be one more secret to mount, with nothing gained.
func readSigner(path string) (ssh.Signer, error) {
	b, err := kit.ReadSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("--git-ssh-key-file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fetch.Permanent(fmt.Errorf("--git-ssh-key-file %s is encrypted with a passphrase; give an unencrypted key", path))
	}
	if err != nil {
		return nil, fetch.Permanent(fmt.Errorf("--git-ssh-key-file %s: not a private key: %w", path, err))
	}
	return signer, nil
}

// hostKeyDB reads the known_hosts file, strictly: the file must exist.
func hostKeyDB(path string) (interface {
	HostKeyCallback() ssh.HostKeyCallback
	HostKeyAlgorithms(string) []string
}, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("--git-known-hosts-file: %w", err)
	}
	db, err := gitssh.NewKnownHostsDb(path)
	if err != nil {
		return nil, fetch.Permanent(fmt.Errorf("--git-known-hosts-file %s: %w", path, err))
	}
	return db, nil
}

// sshAuth is go-git's SSH auth method with our own host key check and
// connect timeout.
type sshAuth struct {
	user       string
	signer     ssh.Signer
	hostKey    ssh.HostKeyCallback
	algorithms []string
	timeout    time.Duration
}

var _ gitssh.AuthMethod = (*sshAuth)(nil)

func (a *sshAuth) Name() string   { return "ssh-public-keys" }
func (a *sshAuth) String() string { return "user: " + a.user + ", name: " + a.Name() }

// ClientConfig is called by go-git for each connection.
func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	return &ssh.ClientConfig{
		User:              a.user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(a.signer)},
		HostKeyCallback:   a.hostKey,
		HostKeyAlgorithms: a.algorithms,
		// go-git dials SSH without the caller's context: bound the connect
		// by what is left of it.
		Timeout: a.timeout,
	}, nil
}
