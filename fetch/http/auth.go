package http

import (
	"fmt"
	nethttp "net/http"
	"strings"

	"github.com/ferrysync/ferry/fetch/kit"
)

// userAgent is sent on every request.
const userAgent = "ferry"

// auth is what the secret files say, read for one Fetch.
type auth struct {
	bearer     string
	user, pass string
	headers    nethttp.Header
}

// any reports whether any credential or header is configured.
func (a auth) any() bool { return a.bearer != "" || a.user != "" || len(a.headers) > 0 }

// apply sets the request's headers. The header file comes first so that
// User-Agent may be overridden there; Authorization conflicts were refused
// when reading.
func (a auth) apply(req *nethttp.Request) {
	req.Header.Set("User-Agent", userAgent)
	for k, vs := range a.headers {
		req.Header[k] = append([]string(nil), vs...)
	}
	switch {
	case a.bearer != "":
		req.Header.Set("Authorization", "Bearer "+a.bearer)
	case a.user != "":
		req.SetBasicAuth(a.user, a.pass)
	}
}

// auth reads the secret files by the kit's rule. Errors are fileErrors,
// which name the path, never the content.
func (o Options) auth() (auth, error) {
	var a auth
	if p := o.BearerTokenFile; p != "" {
		tok, err := kit.ReadSecret(p)
		if err == nil && (!validHeaderValue(tok) || strings.ContainsAny(tok, " \t")) {
			err = fmt.Errorf("%s: the token holds characters not allowed in a header", p)
		}
		if err != nil {
			return a, &kit.FileError{Field: "BearerTokenFile", What: "bearer token file", Err: err}
		}
		a.bearer = tok
	}
	if p := o.PasswordFile; p != "" {
		pass, err := kit.ReadSecret(p)
		if err != nil {
			return a, &kit.FileError{Field: "PasswordFile", What: "password file", Err: err}
		}
		a.user, a.pass = o.Username, pass
	}
	if p := o.HeaderFile; p != "" {
		h, err := readHeaderFile(p)
		if err == nil && h.Get("Authorization") != "" && (a.bearer != "" || a.user != "") {
			err = fmt.Errorf("%s sets Authorization, which the bearer token or basic auth also set", p)
		}
		if err != nil {
			return a, &kit.FileError{Field: "HeaderFile", What: "header file", Err: err}
		}
		a.headers = h
	}
	return a, nil
}

// reservedHeaders are set by the source or by net/http itself; a header file
// setting them would break change detection or framing.
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"If-None-Match": true, "If-Modified-Since": true, "If-Match": true, "If-Unmodified-Since": true,
	"If-Range": true, "Range": true, "Accept-Encoding": true, "Te": true, "Upgrade": true,
}

// readHeaderFile parses lines of "Name: value"; blank lines and lines
// starting with # are skipped. Errors give the line number, never the line:
// a value may be a secret.
func readHeaderFile(p string) (nethttp.Header, error) {
	data, err := kit.ReadSecretFile(p)
	if err != nil {
		return nil, err
	}
	h := nethttp.Header{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok || !validHeaderName(name):
			return nil, fmt.Errorf("%s line %d: want `Name: value`", p, i+1)
		case !validHeaderValue(value):
			return nil, fmt.Errorf("%s line %d: the value of %s holds characters not allowed in a header", p, i+1, name)
		case reservedHeaders[nethttp.CanonicalHeaderKey(name)]:
			return nil, fmt.Errorf("%s line %d: %s is set by ferry and may not be given", p, i+1, name)
		}
		h.Add(name, value)
	}
	return h, nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters (CR and LF above all) in a
// value; tabs and bytes from 0x80 are allowed, as RFC 9110 allows them.
func validHeaderValue(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f })
}
