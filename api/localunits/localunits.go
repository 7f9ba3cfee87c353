// Package localunits answers the API's unit status and journal requests
// for this machine from its systemd and its journal (api.LocalUnits).
package localunits

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/systemd"
)

// statusLogLines is how many journal lines a unit status ends with, as
// systemctl status shows.
const statusLogLines = 10

// statusLogTimeout bounds reading those lines.
const statusLogTimeout = 5 * time.Second

// statusLogMax bounds the size of those lines.
const statusLogMax = 64 << 10

// UnitStatuser is the part of the systemd adapter a unit status needs.
type UnitStatuser interface {
	UnitStatus(ctx context.Context, name string) (systemd.UnitStatus, error)
}

// JournalReader reads a unit's journal; *systemd.Journal implements it.
type JournalReader interface {
	Read(ctx context.Context, name string, opts systemd.JournalOptions) (io.ReadCloser, error)
}

// LocalUnits answers the API's unit status and journal requests for this
// machine from its systemd and its journal. It implements api.LocalUnits.
type LocalUnits struct {
	MachineID string
	Systemd   UnitStatuser
	Logs      JournalReader
}

var _ api.LocalUnits = (*LocalUnits)(nil)

// New answers for the units of the manager sd drives, reading their journal.
func New(machineID string, sd *systemd.Manager) *LocalUnits {
	return &LocalUnits{MachineID: machineID, Systemd: sd,
		Logs: systemd.NewJournal(systemd.JournalConfig{User: sd.UserManager()})}
}

// UnitStatus reports systemd's view of name, its text ending with the
// unit's last journal lines when the journal can be read; when it cannot,
// JournalError says why.
func (l *LocalUnits) UnitStatus(ctx context.Context, name string) (*api.UnitStatusReport, error) {
	st, err := l.Systemd.UnitStatus(ctx, name)
	if err != nil {
		return nil, err
	}
	rep := &api.UnitStatusReport{
		Name:               name,
		MachineID:          l.MachineID,
		SystemdLoadState:   st.LoadState,
		SystemdActiveState: st.ActiveState,
		SystemdSubState:    st.SubState,
		MainPID:            st.MainPID,
		Text:               st.Text,
	}
	logs, err := l.recentLines(ctx, name)
	switch {
	case err != nil:
		rep.JournalError = err.Error()
	case len(logs) > 0:
		rep.Text += "\n" + string(logs)
	}
	return rep, nil
}

// recentLines reads the unit's last journal lines, as systemctl status
// shows them.
func (l *LocalUnits) recentLines(ctx context.Context, name string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, statusLogTimeout)
	defer cancel()
	rc, err := l.read(ctx, name, systemd.JournalOptions{Lines: statusLogLines, Quiet: true})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, readErr := io.Copy(&buf, io.LimitReader(rc, statusLogMax))
	if err := errors.Join(readErr, rc.Close()); err != nil {
		return nil, fmt.Errorf("read journal of %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// Journal streams name's journal. When the machine has no journal the
// error says which machine and why.
func (l *LocalUnits) Journal(ctx context.Context, name string, opts api.JournalOptions) (io.ReadCloser, error) {
	return l.read(ctx, name, systemd.JournalOptions{Lines: opts.Lines, Follow: opts.Follow, Output: opts.Output})
}

func (l *LocalUnits) read(ctx context.Context, name string, opts systemd.JournalOptions) (io.ReadCloser, error) {
	rc, err := l.Logs.Read(ctx, name, opts)
	var ju *systemd.JournalUnavailableError
	if errors.As(err, &ju) {
		return nil, &journalUnavailableError{machineID: l.MachineID, err: ju}
	}
	return rc, err
}

// journalUnavailableError names the machine whose journal is unavailable.
type journalUnavailableError struct {
	machineID string
	err       *systemd.JournalUnavailableError
}

func (e *journalUnavailableError) Error() string {
	return "journal unavailable on machine " + e.machineID + ": " + e.err.Reason
}

func (e *journalUnavailableError) Unwrap() error { return e.err }
