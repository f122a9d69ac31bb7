// Package report is how ferry's packages word their errors: in one line
// that keeps its cause (Errorf), and, for configuration, naming the fields
// of their Options (Fieldf) so that the command line can show them in its
// own vocabulary, flags or file keys (RenderFields).
package report

import (
	"fmt"
	"strings"
)

// Error is an error whose message is written for the user, in one line,
// while the error it was made from (a library's, with its request IDs,
// server pages and retry counts) stays in the chain for errors.Is and
// errors.As: permanence, timeouts, status codes.
type Error struct {
	msg   string
	cause error
}

// Errorf returns an Error with the message format gives and cause as its
// cause. The message is cut to its first line.
func Errorf(cause error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if i := strings.IndexAny(msg, "\r\n"); i >= 0 {
		msg = msg[:i]
	}
	return &Error{msg: msg, cause: cause}
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.cause }

// FirstLine returns the first line of s: a server's error page or a
// library's multi-line message must not fill a log line or /status.
func FirstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// FieldError is a configuration error that names fields of an Options
// struct, written {Field} in its format. Its message names them as they
// are in Go; the command line names them as the user wrote them (a flag,
// a key of the configuration file) with Render. An embedder of a backend
// reads the field names it set.
type FieldError struct {
	parts  []string // text between the fields, one more than fields
	fields []string
}

// Fieldf returns a FieldError. format is fmt's, where {Field} (a Go
// identifier between braces) names a field; only format is searched for
// fields, never args, so a value a user wrote cannot pass for one.
func Fieldf(format string, args ...any) error {
	var parts, fields []string
	text, rest := "", format
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}') + i
		if j < i {
			break
		}
		if !isIdent(rest[i+1 : j]) {
			text, rest = text+rest[:j+1], rest[j+1:]
			continue
		}
		parts = append(parts, text+rest[:i])
		fields = append(fields, rest[i+1:j])
		text, rest = "", rest[j+1:]
	}
	parts = append(parts, text+rest)
	// Format each piece with the args it holds, in order.
	fe := &FieldError{fields: fields}
	for _, p := range parts {
		n := verbs(p)
		fe.parts = append(fe.parts, fmt.Sprintf(p, args[:n]...))
		args = args[n:]
	}
	return fe
}

// verbs counts the formatting verbs of a format, "%%" aside.
func verbs(format string) int {
	n := 0
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		if i+1 < len(format) && format[i+1] == '%' {
			i++
			continue
		}
		n++
	}
	return n
}

func isIdent(s string) bool {
	if s == "" || !(s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Fields returns the fields the error names, in order.
func (e *FieldError) Fields() []string { return e.fields }

// Render returns the message with each field named by name.
func (e *FieldError) Render(name func(field string) string) string {
	var b strings.Builder
	for i, p := range e.parts {
		b.WriteString(p)
		if i < len(e.fields) {
			b.WriteString(name(e.fields[i]))
		}
	}
	return b.String()
}

func (e *FieldError) Error() string { return e.Render(func(f string) string { return f }) }

// RenderFields returns err's message with the fields of every FieldError
// in its tree named by name: the way the command line shows a backend's
// configuration errors in its own vocabulary.
func RenderFields(err error, name func(field string) string) string {
	msg := err.Error()
	var walk func(error)
	walk = func(e error) {
		if fe, ok := e.(*FieldError); ok {
			msg = strings.Replace(msg, fe.Error(), fe.Render(name), 1)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			if c := u.Unwrap(); c != nil {
				walk(c)
			}
		}
	}
	walk(err)
	return msg
}
