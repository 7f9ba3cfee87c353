package testenv

import (
	"testing"
)

// outcome records what a helper did to its test instead of doing it.
type outcome struct {
	testing.TB
	skipped, failed string
}

func (o *outcome) Helper()           {}
func (o *outcome) Skip(args ...any)  { o.skipped = args[0].(string) }
func (o *outcome) Fatal(args ...any) { o.failed = args[0].(string) }

func TestMissingCommandSkipsOutsideCIAndFailsInCI(t *testing.T) {
	const missing = "fleet-testenv-no-such-command"
	for _, tc := range []struct {
		ci         string
		skip, fail bool
	}{
		{ci: "", skip: true},
		{ci: "true", fail: true},
	} {
		t.Setenv("CI", tc.ci)
		o := &outcome{TB: t}
		LookPath(o, missing)
		if (o.skipped != "") != tc.skip || (o.failed != "") != tc.fail {
			t.Errorf("CI=%q: skipped %q, failed %q; want skip %v, fail %v", tc.ci, o.skipped, o.failed, tc.skip, tc.fail)
		}
	}
}

func TestPresentCommandPasses(t *testing.T) {
	t.Setenv("CI", "true")
	o := &outcome{TB: t}
	if p := LookPath(o, "sh"); p == "" || o.skipped != "" || o.failed != "" {
		t.Errorf("LookPath(sh) = %q, skipped %q, failed %q", p, o.skipped, o.failed)
	}
}
