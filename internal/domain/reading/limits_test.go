package reading

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReasonsCoverEveryRejection(t *testing.T) {
	t.Parallel()
	want := []string{"oversized", "invalid_utf8", "not_json", "missing_field", "wrong_type", "non_finite",
		"unknown_device", "time_in_future", "time_too_old", "late"}
	var got []string
	for _, r := range Reasons() {
		got = append(got, string(r))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Reasons() (-want +got):\n%s", diff)
	}
}
