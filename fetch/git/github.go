package git

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/internal/report"
)

// GitHub App authentication: ferry signs a JWT with the app's private key
// (RS256, issued 60 s in the past against clock drift, valid 9 minutes,
// within GitHub's 10), exchanges it for an installation access token at
// POST /app/installations/{id}/access_tokens, and sends that token as the
// HTTP(S) password of user x-access-token until shortly before it
// expires. Neither the token nor the JWT is ever logged or put in an
// error.

// DefaultGitHubAPIURL is GitHub's API; GitHub Enterprise Server's is
// https://HOST/api/v3.
const DefaultGitHubAPIURL = "https://api.github.com"

const (
	// appTokenUser is the user GitHub expects with an installation token.
	appTokenUser = "x-access-token"
	// appJWTLife and appJWTSkew make the JWT's exp and iat.
	appJWTLife = 9 * time.Minute
	appJWTSkew = 60 * time.Second
	// appTokenRenew is how long before its expiry a token is replaced:
	// a fetch that starts with it must not outlive it.
	appTokenRenew = 5 * time.Minute
	// appAPITimeout bounds one token request.
	appAPITimeout = 30 * time.Second
	// maxAppReply bounds what is read of the API's answer.
	maxAppReply = 64 << 10
)

// appTokens mints and caches the installation token of one source.
type appTokens struct {
	appID, installationID int
	keyFile               string
	endpoint              string // the access_tokens URL
	client                *http.Client

	mu      gosync.Mutex
	token   string
	expires time.Time
}

func newAppTokens(o Options) *appTokens {
	api := strings.TrimRight(o.gitHubAPIURL(), "/")
	return &appTokens{
		appID: o.GitHubAppID, installationID: o.GitHubAppInstallationID, keyFile: o.GitHubAppPrivateKeyFile,
		endpoint: api + "/app/installations/" + strconv.Itoa(o.GitHubAppInstallationID) + "/access_tokens",
		client:   &http.Client{Timeout: appAPITimeout},
	}
}

// get returns a token valid for at least appTokenRenew, minting one when
// the cached one is older.
func (a *appTokens) get(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && time.Until(a.expires) > appTokenRenew {
		return a.token, nil
	}
	tok, exp, err := a.mint(ctx)
	if err != nil {
		return "", err
	}
	a.token, a.expires = tok, exp
	return tok, nil
}

// forget drops the cached token, which the origin refused.
func (a *appTokens) forget() {
	a.mu.Lock()
	a.token = ""
	a.mu.Unlock()
}

// mint asks GitHub for a new installation token.
func (a *appTokens) mint(ctx context.Context) (string, time.Time, error) {
	fail := func(err error) (string, time.Time, error) {
		return "", time.Time{}, fmt.Errorf("GitHub App %d installation %d: %w", a.appID, a.installationID, err)
	}
	key, err := readAppKey(a.keyFile)
	if err != nil {
		return fail(err)
	}
	now := time.Now()
	signed, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    strconv.Itoa(a.appID),
		IssuedAt:  jwt.NewNumericDate(now.Add(-appJWTSkew)),
		ExpiresAt: jwt.NewNumericDate(now.Add(appJWTLife)),
	}).SignedString(key)
	if err != nil {
		return fail(fetch.Permanent(fmt.Errorf("signing the JWT: %w", err)))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.endpoint, http.NoBody)
	if err != nil {
		return fail(fetch.Permanent(err))
	}
	req.Header.Set("Authorization", "Bearer "+signed)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "ferry")
	resp, err := a.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the message already
		}
		return fail(fmt.Errorf("POST %s: %w", a.endpoint, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAppReply))
	if err != nil {
		return fail(fmt.Errorf("POST %s: reading the answer: %w", a.endpoint, err))
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("POST %s: %s%s", a.endpoint, resp.Status, apiMessage(body))
		if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout {
			// A wrong app, installation or key: retrying will not help.
			err = fetch.Permanent(err)
		}
		return fail(err)
	}
	var reply struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(body, &reply); err != nil || reply.Token == "" || strings.ContainsAny(reply.Token, "\r\n") {
		return fail(fmt.Errorf("POST %s: the answer holds no token", a.endpoint))
	}
	return reply.Token, reply.ExpiresAt, nil
}

// apiMessage is GitHub's "message" of an error answer, cut to a line.
func apiMessage(body []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil || e.Message == "" {
		return ""
	}
	msg := report.FirstLine(e.Message)
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return " (" + strconv.Quote(msg) + ")"
}

// readAppKey reads the app's private key: PEM, PKCS#1 as GitHub hands it
// out, or PKCS#8.
func readAppKey(path string) (*rsa.PrivateKey, error) {
	b, err := kit.ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(bytes.TrimSpace(b))
	if err != nil {
		return nil, fetch.Permanent(fmt.Errorf("%s: not an RSA private key in PEM: %w", path, err))
	}
	return key, nil
}

func (o Options) gitHubAPIURL() string {
	if o.GitHubAPIURL == "" {
		return DefaultGitHubAPIURL
	}
	return o.GitHubAPIURL
}

// usesGitHubApp tells whether any of the app's settings is given.
func (o Options) usesGitHubApp() bool {
	return o.GitHubAppID != 0 || o.GitHubAppInstallationID != 0 || o.GitHubAppPrivateKeyFile != ""
}

// validateGitHubApp checks the app's settings: all three or none, a key
// that parses, an API URL.
func (o Options) validateGitHubApp() []error {
	if o.GitHubAPIURL != "" {
		if u, err := url.Parse(o.GitHubAPIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" {
			return []error{report.Fieldf("{GitHubAPIURL} %q: want an http(s) URL such as %s or https://HOST/api/v3", o.GitHubAPIURL, DefaultGitHubAPIURL)}
		}
	}
	if !o.usesGitHubApp() {
		return nil
	}
	var errs []error
	if o.GitHubAppID <= 0 {
		errs = append(errs, report.Fieldf("GitHub App authentication needs {GitHubAppID} (a positive number)"))
	}
	if o.GitHubAppInstallationID <= 0 {
		errs = append(errs, report.Fieldf("GitHub App authentication needs {GitHubAppInstallationID} (a positive number)"))
	}
	if o.GitHubAppPrivateKeyFile == "" {
		errs = append(errs, report.Fieldf("GitHub App authentication needs {GitHubAppPrivateKeyFile}"))
	} else if _, err := readAppKey(o.GitHubAppPrivateKeyFile); err != nil {
		errs = append(errs, report.Fieldf("{GitHubAppPrivateKeyFile}: %v", err))
	}
	if o.PasswordFile != "" {
		errs = append(errs, report.Fieldf("give {PasswordFile} or the GitHub App ({GitHubAppPrivateKeyFile}), not both"))
	}
	return errs
}
