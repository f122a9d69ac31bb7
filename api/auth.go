package api

import (
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/ferrysync/ferry/fetch/kit"
)

// authorize lets a process on this machine trigger freely (the app in the
// same pod) and asks everyone else for the bearer token. A web page open
// in a browser on this machine is everyone else: it connects from
// loopback too, but the browser marks what it sends (see crossSite).
func authorize(r *http.Request, tokenFile string, cop *http.CrossOriginProtection) error {
	if isLoopback(r.RemoteAddr) {
		err := crossSite(r, cop)
		if err == nil {
			return nil
		}
		if r.Header.Get("Authorization") == "" {
			return err
		}
	}
	if tokenFile == "" {
		return errors.New("POST /sync from another address or a web page needs a bearer token, and none is configured")
	}
	want, err := kit.ReadSecret(tokenFile)
	if err != nil {
		return errors.New("sync token file unusable")
	}
	got, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return errors.New("missing or wrong bearer token")
	}
	return nil
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearerToken is the credentials of an Authorization header of the Bearer
// scheme, whose name is case-insensitive (RFC 7235 section 2.1).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// crossSite says why a request looks sent by a web page other than the
// endpoint's own, or nil. Browsers mark what a page sends with Origin and
// Sec-Fetch-Site, which http.CrossOriginProtection compares with Host. A
// page whose host name its owner made resolve to 127.0.0.1 (DNS
// rebinding) is same-origin with itself, so a browser's request must also
// be addressed to a loopback host name.
func crossSite(r *http.Request, cop *http.CrossOriginProtection) error {
	if err := cop.Check(r); err != nil {
		return errors.New("POST /sync from a web page of another origin is refused")
	}
	fromBrowser := r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != ""
	if fromBrowser && !isLoopbackHost(r.Host) {
		return errors.New("POST /sync from a web page must address a loopback host")
	}
	return nil
}

// isLoopbackHost says whether a Host header names this machine's loopback
// interface: an IP literal, localhost, or a name under .localhost (RFC
// 6761), which browsers resolve to loopback themselves.
func isLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// readers guards a read-only endpoint with tokenFile: a request from
// another address needs its bearer token; from loopback, or with no
// token file, none.
func readers(tokenFile string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if tokenFile != "" && !isLoopback(r.RemoteAddr) {
			want, err := kit.ReadSecret(tokenFile)
			got, ok := bearerToken(r.Header.Get("Authorization"))
			if err != nil || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				w.Header().Set("WWW-Authenticate", "Bearer")
				http.Error(w, "a bearer token is needed from another address", http.StatusUnauthorized)
				return
			}
		}
		h(w, r)
	}
}
