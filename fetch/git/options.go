package git

import (
	"errors"

	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/fetch/trust"
	"github.com/ferrysync/ferry/internal/report"
)

// Options are the settings shared by every git source. Secrets are file
// paths, read again on every Fetch so a rotated Kubernetes Secret is used
// without a restart.
type Options struct {
	// Username is the HTTP basic-auth user. A user in the URL wins; with a
	// password and no user at all, "git" is sent. SSH takes its user from
	// the URL only (default "git").
	Username string
	// PasswordFile holds the HTTP password or token.
	PasswordFile string
	// SSHKeyFile holds the SSH private key, unencrypted.
	SSHKeyFile string
	// KnownHostsFile lists the SSH host keys to trust.
	KnownHostsFile string
	// InsecureIgnoreHostKey accepts any SSH host key. Every sync logs a
	// warning.
	InsecureIgnoreHostKey bool
	// VerifyKeysFile holds the public keys (OpenPGP, SSH) that must have
	// signed what is published: with it, every git source publishes only
	// a commit (or, with ?verify=tag, a tag) whose signature verifies
	// against one of them. Read again on every sync; a change verifies the
	// published commit again.
	VerifyKeysFile string
	// GitHubAppID, GitHubAppInstallationID and GitHubAppPrivateKeyFile
	// authenticate HTTP(S) sources as a GitHub App installation: ferry
	// mints installation tokens with the key (re-read for each) and
	// caches each until shortly before it expires (github.go).
	GitHubAppID             int
	GitHubAppInstallationID int
	GitHubAppPrivateKeyFile string
	// GitHubAPIURL is where tokens are asked for ("": DefaultGitHubAPIURL;
	// GitHub Enterprise Server: https://HOST/api/v3).
	GitHubAPIURL string
}

// Validate checks every file the options name: it must be readable and
// hold what its field says. Which files a source needs depends on its URL:
// New checks that, and only the files its URL uses. Errors name the fields.
func (o Options) Validate() error {
	var errs []error
	if o.PasswordFile != "" {
		if _, err := kit.ReadSecret(o.PasswordFile); err != nil {
			errs = append(errs, report.Fieldf("{PasswordFile}: %v", err))
		}
	}
	if o.SSHKeyFile != "" {
		if _, err := readSigner(o.SSHKeyFile); err != nil {
			errs = append(errs, report.Fieldf("{SSHKeyFile}: %v", err))
		}
	}
	if o.KnownHostsFile != "" {
		if _, err := hostKeyDB(o.KnownHostsFile); err != nil {
			errs = append(errs, report.Fieldf("{KnownHostsFile}: %v", err))
		}
	}
	if o.VerifyKeysFile != "" {
		if _, err := trust.NewFile(o.VerifyKeysFile).Load(); err != nil {
			errs = append(errs, report.Fieldf("{VerifyKeysFile}: %v", err))
		}
	}
	errs = append(errs, o.validateGitHubApp()...)
	return errors.Join(errs...)
}

// forScheme keeps what a URL of scheme uses: the user and password (or
// the GitHub App) over HTTP(S), the key and host keys over SSH, nothing else over git:// or
// file://; the keys that verify signatures whatever the scheme.
func (o Options) forScheme(scheme string) Options {
	switch scheme {
	case "http", "https":
		return Options{Username: o.Username, PasswordFile: o.PasswordFile, VerifyKeysFile: o.VerifyKeysFile,
			GitHubAppID: o.GitHubAppID, GitHubAppInstallationID: o.GitHubAppInstallationID,
			GitHubAppPrivateKeyFile: o.GitHubAppPrivateKeyFile, GitHubAPIURL: o.GitHubAPIURL}
	case "ssh":
		o.Username, o.PasswordFile = "", ""
		return o
	}
	return Options{VerifyKeysFile: o.VerifyKeysFile}
}
