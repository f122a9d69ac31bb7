package kit

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// ErrNoPEM is TLSTransport's answer to a CA file that holds no certificate.
var ErrNoPEM = errors.New("holds no PEM certificate")

// TLSTransport is a clone of http.DefaultTransport that trusts the system
// roots and the certificates of pem (a CA file's content, or nil), at
// TLS 1.2 or later; insecure turns verification off, which the caller
// warns about on every sync.
func TLSTransport(pem []byte, insecure bool) (*http.Transport, error) {
	var roots *x509.CertPool // nil: the system roots
	if len(pem) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, ErrNoPEM
		}
		roots = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{
		RootCAs:            roots,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: insecure, // #nosec G402 -- opt-in, warned on every sync
	}
	return tr, nil
}

// ReadCAFile reads the PEM file path, an option's CAFile: nil when path is
// empty. Its error is a FileError of the field CAFile.
func ReadCAFile(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, &FileError{Field: "CAFile", What: "CA file", Err: err}
	}
	return pem, nil
}

// CATransport is TLSTransport for the content pem of the CA file path,
// its error a FileError of the field CAFile that names the file.
func CATransport(pem []byte, path string, insecure bool) (*http.Transport, error) {
	tr, err := TLSTransport(pem, insecure)
	if err != nil {
		return nil, &FileError{Field: "CAFile", What: "CA file", Err: fmt.Errorf("%s %w", path, err)}
	}
	return tr, nil
}
