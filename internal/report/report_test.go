package report_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/report"
)

func TestErrorIsOneLineAndKeepsItsCause(t *testing.T) {
	cause := os.ErrDeadlineExceeded
	err := report.Errorf(cause, "fetch %s: %s", "x", "server said\n<html>...")
	if err.Error() != "fetch x: server said" || !errors.Is(err, cause) {
		t.Fatalf("%q, Is = %v", err, errors.Is(err, cause))
	}
}

func TestFieldErrorsAreRenderedInTheCallersVocabulary(t *testing.T) {
	err := report.Fieldf("{Username} and {PasswordFile} go together (got %q for %s)", "u{Evil}", "{x}")
	if got := err.Error(); got != `Username and PasswordFile go together (got "u{Evil}" for {x})` {
		t.Fatalf("Error() = %q", got)
	}
	wrapped := fmt.Errorf("source cfg: %w", errors.Join(err, errors.New("other")))
	flags := func(f string) string { return "--http-" + strings.ToLower(f) }
	if got := report.RenderFields(wrapped, flags); got != "source cfg: --http-username and --http-passwordfile go together (got \"u{Evil}\" for {x})\nother" {
		t.Fatalf("RenderFields = %q", got)
	}
	var fe *report.FieldError
	if !errors.As(wrapped, &fe) || strings.Join(fe.Fields(), ",") != "Username,PasswordFile" {
		t.Fatalf("fields = %v", fe)
	}
	if got := report.Fieldf("{not a field} {Port}: %d%%", 5).Error(); got != "{not a field} Port: 5%" {
		t.Fatalf("%q", got)
	}
}
