package localunits

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/systemd"
)

func TestLocalJournalUnavailableNamesTheMachine(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-journald")
	l := &LocalUnits{MachineID: "m1", Logs: systemd.NewJournal(systemd.JournalConfig{Socket: sock})}
	_, err := l.Journal(t.Context(), "a.service", api.JournalOptions{Lines: 10})
	want := "journal unavailable on machine m1: journald is not running (no " + sock + ")"
	if err == nil || err.Error() != want {
		t.Fatalf("Journal error = %v, want %q", err, want)
	}
	if !errors.Is(err, systemd.ErrJournalUnavailable) {
		t.Errorf("error does not match systemd.ErrJournalUnavailable")
	}
	var ju interface{ JournalUnavailable() bool }
	if !errors.As(err, &ju) || !ju.JournalUnavailable() {
		t.Errorf("error has no JournalUnavailable() true in its chain")
	}
}
