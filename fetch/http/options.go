package http

import (
	"errors"
	"strings"

	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/fetch/trust"
	"github.com/ferrysync/ferry/internal/report"
)

// DefaultMaxBodyBytes bounds a download, and the bytes an archive expands
// to, when Options.MaxBodyBytes is zero: far above a configuration bundle,
// low enough that a hostile origin cannot fill the volume.
const DefaultMaxBodyBytes int64 = 1 << 30

// Options configure every HTTP(S) source. Secrets are file paths, read
// again on every Fetch so that a rotated Kubernetes Secret is picked up.
type Options struct {
	// BearerTokenFile holds a token sent as "Authorization: Bearer TOKEN".
	// Secret.
	BearerTokenFile string
	// HeaderFile holds extra request headers, one "Name: value" a line;
	// blank lines and lines starting with # are ignored. Treated as a
	// secret: values are never logged.
	HeaderFile string
	// Username is the basic-auth user; it needs PasswordFile.
	Username string
	// PasswordFile holds the basic-auth password. Secret.
	PasswordFile string
	// CAFile is a PEM bundle trusted in addition to the system roots.
	// Re-read on every Fetch; a change rebuilds the client.
	CAFile string
	// InsecureSkipVerify turns off certificate verification. Every Fetch
	// logs a warning.
	InsecureSkipVerify bool
	// MaxBodyBytes bounds the downloaded body and the bytes an archive
	// expands to; zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// VerifyKeysFile holds the public keys (OpenPGP, SSH) that must have
	// signed every body: with it, each source needs ?signature=URL, a
	// detached signature of the body, which is verified before anything
	// is published. Re-read on every Fetch; a change downloads and
	// verifies the published body again.
	VerifyKeysFile string
}

// Validate checks the options and reads the files they name, without
// network access: a wrong path is a configuration error, found before the
// first sync rather than on it. Its errors name the fields (report.FieldError),
// all of them in one line.
func (o Options) Validate() error { return errors.Join(o.problems()...) }

func (o Options) problems() []error {
	var errs []error
	if (o.Username == "") != (o.PasswordFile == "") {
		errs = append(errs, report.Fieldf("{Username} and {PasswordFile} go together"))
	}
	if o.BearerTokenFile != "" && (o.Username != "" || o.PasswordFile != "") {
		errs = append(errs, report.Fieldf("give either {BearerTokenFile} or {Username}/{PasswordFile}, not both"))
	}
	if strings.Contains(o.Username, ":") {
		errs = append(errs, report.Fieldf("{Username} must not contain ':'"))
	}
	if o.MaxBodyBytes < 0 {
		errs = append(errs, report.Fieldf("{MaxBodyBytes} must not be negative, got %d", o.MaxBodyBytes))
	}
	if _, err := o.auth(); err != nil {
		errs = append(errs, kit.FieldError(err))
	}
	if o.VerifyKeysFile != "" {
		if _, err := trust.NewFile(o.VerifyKeysFile).Load(); err != nil {
			errs = append(errs, report.Fieldf("{VerifyKeysFile}: %v", err))
		}
	}
	pem, err := kit.ReadCAFile(o.CAFile)
	if err == nil {
		_, err = o.client(pem)
	}
	if err != nil {
		errs = append(errs, kit.FieldError(err))
	}
	return errs
}
