package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/internal/report"
)

// Options configure every OCI source. Secrets are file paths, read again
// on every Fetch so that a rotated Kubernetes Secret is picked up.
type Options struct {
	// DockerConfigFile is a Docker config.json, the content of a
	// Kubernetes dockerconfigjson Secret: the entry of the source's
	// registry gives its credentials; without one, access is anonymous.
	// Credential helpers (credsStore, credHelpers) are not run. Secret.
	DockerConfigFile string
	// Username is the basic-auth user; it needs PasswordFile.
	Username string
	// PasswordFile holds the basic-auth password (or an access token the
	// registry takes as a password). Secret.
	PasswordFile string
	// BearerTokenFile holds a registry token sent as "Authorization:
	// Bearer TOKEN", without the registry's token exchange. Secret.
	BearerTokenFile string
	// CAFile is a PEM bundle trusted in addition to the system roots.
	// Re-read on every Fetch; a change rebuilds the client.
	CAFile string
	// InsecureSkipVerify turns off certificate verification. Every Fetch
	// logs a warning.
	InsecureSkipVerify bool
}

// Validate checks the options and reads the files they name, without
// network access. Its errors name the fields (report.Fieldf), all of them
// in one line.
func (o Options) Validate() error {
	var errs []error
	given := 0
	for _, f := range []string{o.DockerConfigFile, o.PasswordFile, o.BearerTokenFile} {
		if f != "" {
			given++
		}
	}
	if given > 1 {
		errs = append(errs, report.Fieldf("give one of {DockerConfigFile}, {Username}/{PasswordFile} or {BearerTokenFile}"))
	}
	if (o.Username == "") != (o.PasswordFile == "") {
		errs = append(errs, report.Fieldf("{Username} and {PasswordFile} go together"))
	}
	if _, err := o.credentials(name.Registry{}); err != nil {
		errs = append(errs, kit.FieldError(err))
	}
	pem, err := kit.ReadCAFile(o.CAFile)
	if err == nil {
		_, err = kit.CATransport(pem, o.CAFile, o.InsecureSkipVerify)
	}
	if err != nil {
		errs = append(errs, kit.FieldError(err))
	}
	return errors.Join(errs...)
}

// credentials reads the secret files for reg, by the kit's rule. A
// registry without an entry in the Docker config is anonymous, as for
// docker pull. An empty reg (Validate) only checks that the files parse.
func (o Options) credentials(reg name.Registry) (authn.AuthConfig, error) {
	switch {
	case o.DockerConfigFile != "":
		return o.dockerConfig(reg)
	case o.PasswordFile != "":
		pass, err := kit.ReadSecret(o.PasswordFile)
		if err != nil {
			return authn.AuthConfig{}, &kit.FileError{Field: "PasswordFile", What: "password file", Err: err}
		}
		return authn.AuthConfig{Username: o.Username, Password: pass}, nil
	case o.BearerTokenFile != "":
		tok, err := kit.ReadSecret(o.BearerTokenFile)
		if err == nil && strings.ContainsAny(tok, " \t") {
			err = fmt.Errorf("%s: the token holds white space", o.BearerTokenFile)
		}
		if err != nil {
			return authn.AuthConfig{}, &kit.FileError{Field: "BearerTokenFile", What: "bearer token file", Err: err}
		}
		return authn.AuthConfig{RegistryToken: tok}, nil
	}
	return authn.AuthConfig{}, nil
}

// dockerConfig looks reg up in the Docker config file by the keys docker
// and go-containerregistry's keychain use (Docker Hub's is its v1 URL).
func (o Options) dockerConfig(reg name.Registry) (authn.AuthConfig, error) {
	data, err := kit.ReadSecretFile(o.DockerConfigFile)
	if err == nil && !json.Valid(data) {
		err = fmt.Errorf("%s is not JSON (want a Docker config.json, as a kubernetes.io/dockerconfigjson Secret holds it)", o.DockerConfigFile)
	}
	if err != nil {
		return authn.AuthConfig{}, &kit.FileError{Field: "DockerConfigFile", What: "Docker config file", Err: err}
	}
	cf, err := config.LoadFromReader(bytes.NewReader(data))
	if err != nil {
		// Its message may quote a base64 "auth" that does not decode.
		return authn.AuthConfig{}, &kit.FileError{Field: "DockerConfigFile", What: "Docker config file", Err: fmt.Errorf("%s: an entry of \"auths\" does not parse", o.DockerConfigFile)}
	}
	if reg.RegistryStr() == "" {
		return authn.AuthConfig{}, nil
	}
	// Helpers are programs the sidecar's image does not have.
	cf.CredentialsStore, cf.CredentialHelpers = "", nil
	key := reg.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	ac, err := cf.GetAuthConfig(key)
	if err != nil {
		return authn.AuthConfig{}, &kit.FileError{Field: "DockerConfigFile", What: "Docker config file", Err: fmt.Errorf("%s: entry for %s: does not parse", o.DockerConfigFile, reg.RegistryStr())}
	}
	return authn.AuthConfig{Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}, nil
}

// any reports whether c holds a credential.
func hasCredentials(c authn.AuthConfig) bool { return c != authn.AuthConfig{} }

// clientKey identifies what a cached client was built from: the
// credentials and the CA file's content.
func clientKey(c authn.AuthConfig, pem []byte) [sha256.Size]byte {
	b, _ := json.Marshal(c)
	return sha256.Sum256(append(append(b, 0), pem...))
}
