package systemd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	sd "github.com/coreos/go-systemd/v22/dbus"

	"github.com/godbus/dbus/v5"

	"github.com/fleet-next/fleet/unit"
)

// ErrNoSuchUnit matches (errors.Is) the error of an operation on a unit
// systemd does not know.
var ErrNoSuchUnit = errors.New("systemd: no such unit")

// NoSuchUnitError is the error of an operation on a unit systemd does not
// know. It matches ErrNoSuchUnit and unwraps to the D-Bus error.
type NoSuchUnitError struct {
	Op   string // "start", "stop", ...
	Unit string
	Err  error
}

func (e *NoSuchUnitError) Error() string { return e.Op + " " + e.Unit + ": " + e.Err.Error() }

// Unwrap returns the D-Bus error.
func (e *NoSuchUnitError) Unwrap() error { return e.Err }

// Is makes the error match ErrNoSuchUnit.
func (e *NoSuchUnitError) Is(target error) bool { return target == ErrNoSuchUnit }

// NoSuchUnit lets callers that do not import this package recognise the
// error through a one-method interface.
func (e *NoSuchUnitError) NoSuchUnit() bool { return true }

// D-Bus errors systemd returns.
const (
	errNameNoSuchUnit = "org.freedesktop.systemd1.NoSuchUnit"
	errNameLoadFailed = "org.freedesktop.systemd1.LoadFailed"
)

// jobMode is the mode of every job fleet queues.
const jobMode = "replace"

// mainPIDConcurrency bounds the MainPID lookups States keeps in flight.
const mainPIDConcurrency = 8

// statesChunk bounds how many units one ListUnitsByNames call asks for.
const statesChunk = 512

func dbusErrorName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	var dp *dbus.Error
	if errors.As(err, &dp) {
		return dp.Name
	}
	return ""
}

// unitError wraps an error of op on name, turning systemd's "no such unit"
// into a NoSuchUnitError.
func unitError(op, name string, err error) error {
	if dbusErrorName(err) == errNameNoSuchUnit {
		return &NoSuchUnitError{Op: op, Unit: name, Err: err}
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// paths maps unit names to their files in the units directory.
func (m *Manager) paths(names []string) ([]string, error) {
	paths := make([]string, len(names))
	for i, n := range names {
		p, err := m.unitPath(n)
		if err != nil {
			return nil, err
		}
		paths[i] = p
	}
	return paths, nil
}

// Link links the unit files of names into systemd's runtime search path,
// replacing conflicting links.
func (m *Manager) Link(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	paths, err := m.paths(names)
	if err != nil {
		return err
	}
	if err := m.call(ctx, func(c *sd.Conn) error {
		_, err := c.LinkUnitFilesContext(ctx, paths, true, true)
		return err
	}); err != nil {
		return fmt.Errorf("link %s: %w", strings.Join(names, " "), err)
	}
	return nil
}

// Enable enables the unit files of names at runtime so that their [Install]
// section takes effect, replacing conflicting links.
func (m *Manager) Enable(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	paths, err := m.paths(names)
	if err != nil {
		return err
	}
	if err := m.call(ctx, func(c *sd.Conn) error {
		_, _, err := c.EnableUnitFilesContext(ctx, paths, true, true)
		return err
	}); err != nil {
		return fmt.Errorf("enable %s: %w", strings.Join(names, " "), err)
	}
	return nil
}

// Disable removes the runtime links and enablement of names.
func (m *Manager) Disable(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if err := m.call(ctx, func(c *sd.Conn) error {
		_, err := c.DisableUnitFilesContext(ctx, names, true)
		return err
	}); err != nil {
		return fmt.Errorf("disable %s: %w", strings.Join(names, " "), err)
	}
	return nil
}

// Reload runs daemon-reload and returns when systemd has finished it.
func (m *Manager) Reload(ctx context.Context) error {
	if err := m.call(ctx, func(c *sd.Conn) error { return c.ReloadContext(ctx) }); err != nil {
		return fmt.Errorf("daemon-reload: %w", err)
	}
	return nil
}

// Start queues a start job in mode "replace" and returns once it is queued.
func (m *Manager) Start(ctx context.Context, name string) error {
	return m.queueJob(ctx, "start", name, (*sd.Conn).StartUnitContext)
}

// Stop queues a stop job in mode "replace" and returns once it is queued.
func (m *Manager) Stop(ctx context.Context, name string) error {
	return m.queueJob(ctx, "stop", name, (*sd.Conn).StopUnitContext)
}

type jobFunc func(c *sd.Conn, ctx context.Context, name, mode string, ch chan<- string) (int, error)

func (m *Manager) queueJob(ctx context.Context, op, name string, queue jobFunc) error {
	conn, gone, err := m.c(ctx)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	// Buffered so that go-systemd's signal dispatcher never blocks on it.
	result := make(chan string, 1)
	id, err := queue(conn, ctx, name, jobMode, result)
	if err != nil {
		if !conn.Connected() {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return unitError(op, name, err)
	}
	go m.logJobResult(op, name, id, result, gone)
	return nil
}

// logJobResult logs how a job ended, or gives up when its connection is
// lost or the Manager closes.
func (m *Manager) logJobResult(op, name string, id int, result <-chan string, gone <-chan struct{}) {
	select {
	case r := <-result:
		if r == "done" {
			m.log.Debug("job done", "op", op, "unit", name, "job", id)
			return
		}
		m.log.Info("job did not complete", "op", op, "unit", name, "job", id, "result", r)
	case <-gone:
	case <-m.done:
	}
}

// ResetFailed clears the failed state of name. It is not an error if the
// unit is not failed or unknown.
func (m *Manager) ResetFailed(ctx context.Context, name string) error {
	err := m.call(ctx, func(c *sd.Conn) error { return c.ResetFailedUnitContext(ctx, name) })
	if err == nil {
		return nil
	}
	switch dbusErrorName(err) {
	case errNameNoSuchUnit, errNameLoadFailed:
		return nil
	}
	return fmt.Errorf("reset-failed %s: %w", name, err)
}

// States reports systemd's view of names; unknown units have LoadState
// "not-found". It makes one ListUnitsByNames call per 512 names plus one
// MainPID lookup per service that is not inactive or failed.
func (m *Manager) States(ctx context.Context, names []string) (map[string]unit.SystemdState, error) {
	states := make(map[string]unit.SystemdState, len(names))
	for chunk := range slices.Chunk(names, statesChunk) {
		if err := m.listStates(ctx, chunk, states); err != nil {
			return nil, err
		}
	}
	if err := m.fillMainPIDs(ctx, states); err != nil {
		return nil, err
	}
	return states, nil
}

// listStates fills states with systemd's view of names (one call).
// systemd leaves out of its reply the names it cannot parse as a unit name
// of a type it knows (x.snapshot, x.busname since systemd 230); those are
// reported "not-found", as systemd reports any unit it does not have, so
// that one such name never hides the state of the others.
func (m *Manager) listStates(ctx context.Context, names []string, states map[string]unit.SystemdState) error {
	var list []sd.UnitStatus
	err := m.call(ctx, func(c *sd.Conn) (err error) {
		list, err = c.ListUnitsByNamesContext(ctx, names)
		return err
	})
	if err != nil {
		return fmt.Errorf("list units: %w", err)
	}
	if len(list) != len(names) {
		if len(names) == 1 {
			states[names[0]] = unit.SystemdState{LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
			return nil
		}
		// Which names are missing cannot be told from the reply (an alias
		// answers with its unit's name): ask one at a time.
		for _, n := range names {
			if err := m.listStates(ctx, []string{n}, states); err != nil {
				return err
			}
		}
		return nil
	}
	// Replies come in request order; an alias reports its unit's primary
	// name, so key by the name asked for.
	for i, st := range list {
		states[names[i]] = unit.SystemdState{
			LoadState:   st.LoadState,
			ActiveState: st.ActiveState,
			SubState:    st.SubState,
		}
	}
	return nil
}

func mayHaveMainPID(name string, st unit.SystemdState) bool {
	return strings.HasSuffix(name, ".service") && st.LoadState == "loaded" &&
		st.ActiveState != "inactive" && st.ActiveState != "failed"
}

// fillMainPIDs looks up MainPID for every service in states that may have
// one, pipelining up to mainPIDConcurrency calls on the connection.
func (m *Manager) fillMainPIDs(ctx context.Context, states map[string]unit.SystemdState) error {
	var names []string
	for name, st := range states {
		if mayHaveMainPID(name, st) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	pids := make([]uint32, len(names))
	errs := make([]error, len(names))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(mainPIDConcurrency, len(names)) {
		wg.Go(func() {
			for i := range next {
				pids[i], errs[i] = m.mainPID(ctx, names[i])
			}
		})
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, name := range names {
		st := states[name]
		st.MainPID = pids[i]
		states[name] = st
	}
	return nil
}

func (m *Manager) mainPID(ctx context.Context, name string) (uint32, error) {
	var p *sd.Property
	err := m.call(ctx, func(c *sd.Conn) (err error) {
		p, err = c.GetUnitTypePropertyContext(ctx, name, "Service", "MainPID")
		return err
	})
	if err != nil {
		if dbusErrorName(err) == errNameNoSuchUnit {
			return 0, nil // gone since it was listed
		}
		return 0, fmt.Errorf("get MainPID of %s: %w", name, err)
	}
	pid, ok := p.Value.Value().(uint32)
	if !ok {
		return 0, fmt.Errorf("get MainPID of %s: unexpected type %s", name, p.Value.Signature())
	}
	return pid, nil
}
