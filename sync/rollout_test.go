package sync

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/report"
)

func TestRolloutValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		r    Rollout
		want string
	}{
		{Rollout{Window: -time.Second}, "Window must not be negative"},
		{Rollout{Window: time.Minute}, "InstanceID is required with Window"},
		{Rollout{InstanceID: "pod\n1"}, `InstanceID "pod": want at most 253 bytes and no control characters`},
		{Rollout{InstanceID: strings.Repeat("p", 254)}, "InstanceID"},
	} {
		err := tc.r.Validate()
		var fe *report.FieldError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &fe) {
			t.Errorf("Validate(%+v) = %v, want a field error with %q", tc.r, err, tc.want)
		}
	}
	if err := (Rollout{Window: time.Minute, InstanceID: "pod-1", RollbackOnReject: true}).Validate(); err != nil {
		t.Errorf("a valid rollout: %v", err)
	}
}
