package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// systemdPaths are where launch looks for the systemd binary.
var systemdPaths = []string{"/usr/lib/systemd/systemd", "/lib/systemd/systemd"}

// InCI reports whether the tests run in CI (the environment variable CI is
// set and not empty).
func InCI() bool { return os.Getenv("CI") != "" }

// RequireRoot skips t under -short, and when the process is not root: the
// test starts private systemd managers, which needs a mount namespace and
// cgroups of its own. In CI it fails instead of skipping.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root and a real systemd: not run with -short")
	}
	if os.Geteuid() != 0 {
		unmet(t, "needs root (a private systemd manager needs a mount namespace and cgroups)")
	}
}

// RequireSystemd is RequireRoot, and also requires the systemd binary that
// a private manager runs.
func RequireSystemd(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	for _, p := range systemdPaths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return
		}
	}
	unmet(t, "needs systemd installed (none of "+systemdPaths[0]+", "+systemdPaths[1]+")")
}

// LookPath returns the path of the command name (journalctl, say). It
// skips t when the command is not installed, or fails it in CI.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		unmet(t, name+" is not installed")
	}
	return p
}

// unmet skips t, or fails it in CI, for a need of the machine.
func unmet(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatal(why + " (CI is set, so this fails instead of skipping)")
		return
	}
	t.Skip(why)
}
