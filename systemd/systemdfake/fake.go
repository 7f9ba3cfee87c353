package systemdfake

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/fleet-next/fleet/unit"
)

// ErrNoSuchUnit matches (errors.Is) the error of starting or stopping a
// unit the fake manager has not loaded.
var ErrNoSuchUnit = errors.New("systemdfake: no such unit")

// NoSuchUnitError is the error of a job on a unit that is not loaded.
type NoSuchUnitError struct {
	Op, Unit string
}

func (e *NoSuchUnitError) Error() string {
	return e.Op + " " + e.Unit + ": unit " + e.Unit + " not found"
}

// Is makes the error match ErrNoSuchUnit.
func (e *NoSuchUnitError) Is(target error) bool { return target == ErrNoSuchUnit }

// NoSuchUnit lets callers recognise the error through a one-method
// interface, as they do for the D-Bus adapter's error.
func (e *NoSuchUnitError) NoSuchUnit() bool { return true }

// Systemd state strings the fake reports.
const (
	loadLoaded     = "loaded"
	loadNotFound   = "not-found"
	loadError      = "error"
	loadBadSetting = "bad-setting"

	activeActive   = "active"
	activeInactive = "inactive"
	activeFailed   = "failed"

	subRunning = "running"
	subExited  = "exited"
	subDead    = "dead"
	subFailed  = "failed"
	subActive  = "active"
)

// firstPID is the first fake main PID handed out.
const firstPID = 1000

// definition is what a daemon-reload loaded for one unit.
type definition struct {
	bad      bool     // the file did not parse: LoadState "error"
	badSet   bool     // a service with nothing to run: LoadState "bad-setting"
	service  bool     // a .service unit
	exits    bool     // the service's process exits by itself
	fails    bool     // ... with a failure
	remain   bool     // ... and the unit stays active (RemainAfterExit)
	wantedBy []string // [Install] WantedBy=
}

// runState is a unit's runtime state; the zero value is inactive/dead.
type runState struct {
	active, sub string
	pid         uint32
}

func (r runState) isZero() bool { return r == runState{} }

// Manager is an in-memory units directory and systemd manager. The zero
// value is not usable; call New.
type Manager struct {
	mu       sync.Mutex // guards the fields below
	down     bool       // between the two halves of Restart: every call fails
	files    map[string]string
	hashes   map[string]unit.Hash
	linked   map[string]bool
	enabled  map[string]bool
	loaded   map[string]*definition // as of the last Reload
	wants    map[string][]string    // unit -> units that want it, as of the last Reload
	run      map[string]runState    // units that are not inactive/dead
	nextPID  uint32
	watchers map[*watcher]struct{}
	host     map[string]string // units the host has of its own: name -> path
}

// New returns an empty manager: no unit files, nothing loaded or running.
func New() *Manager {
	return &Manager{
		files:    map[string]string{},
		hashes:   map[string]unit.Hash{},
		linked:   map[string]bool{},
		enabled:  map[string]bool{},
		loaded:   map[string]*definition{},
		wants:    map[string][]string{},
		run:      map[string]runState{},
		nextPID:  firstPID,
		watchers: map[*watcher]struct{}{},
		host:     map[string]string{},
	}
}

// checkName rejects names the real adapter rejects: empty, dot files and
// anything that could leave the units directory.
func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid unit file name %q", name)
	}
	return nil
}

// UnitFiles lists the unit files with the hash of their contents.
func (m *Manager) UnitFiles(ctx context.Context) (map[string]unit.Hash, error) {
	if err := m.up(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]unit.Hash, len(m.hashes))
	for n, h := range m.hashes {
		out[n] = h
	}
	return out, nil
}

// WriteUnitFile stores content as the file name.
func (m *Manager) WriteUnitFile(ctx context.Context, name, content string) error {
	if err := m.up(ctx); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[name] = content
	m.hashes[name] = unit.HashOf(content)
	return nil
}

// RemoveUnitFile deletes the file; no error if it is already gone.
func (m *Manager) RemoveUnitFile(ctx context.Context, name string) error {
	if err := m.up(ctx); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, name)
	delete(m.hashes, name)
	return nil
}

// Link links the files of names at runtime. Every file must exist.
func (m *Manager) Link(ctx context.Context, names []string) error {
	return m.setLinks(ctx, "link", names, false)
}

// Enable links the files of names and enables them at runtime, so that
// their WantedBy= takes effect at the next Reload. Every file must exist.
func (m *Manager) Enable(ctx context.Context, names []string) error {
	return m.setLinks(ctx, "enable", names, true)
}

func (m *Manager) setLinks(ctx context.Context, op string, names []string, enable bool) error {
	if err := m.up(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		if err := checkName(n); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if _, ok := m.files[n]; !ok {
			return fmt.Errorf("%s %s: no such unit file", op, n)
		}
	}
	for _, n := range names {
		m.linked[n] = true
		if enable {
			m.enabled[n] = true
		}
	}
	return nil
}

// Disable removes the runtime links and enablement of names.
func (m *Manager) Disable(ctx context.Context, names []string) error {
	if err := m.up(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		delete(m.linked, n)
		delete(m.enabled, n)
	}
	return nil
}

// Reload loads every linked unit whose file exists, forgets the rest and
// records what the enabled units want.
func (m *Manager) Reload(ctx context.Context) error {
	if err := m.up(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	before := make(map[string]unit.SystemdState, len(m.loaded)+len(m.linked))
	for n := range m.loaded {
		before[n] = m.stateLocked(n)
	}
	for n := range m.linked {
		before[n] = m.stateLocked(n)
	}
	loaded := make(map[string]*definition, len(m.linked))
	for n := range m.linked {
		if content, ok := m.files[n]; ok {
			loaded[n] = define(n, content)
		}
	}
	wants := map[string][]string{}
	for n, def := range loaded {
		if !m.enabled[n] {
			continue
		}
		for _, target := range def.wantedBy {
			wants[target] = append(wants[target], n)
		}
	}
	for _, ws := range wants {
		slices.Sort(ws)
	}
	m.loaded, m.wants = loaded, wants
	for n, st := range before {
		m.notifyIfChanged(n, st)
	}
	return nil
}

// define reads what the fake needs from a unit file.
func define(name, content string) *definition {
	f, err := unit.Parse(content)
	if err != nil {
		return &definition{bad: true}
	}
	d := &definition{service: strings.HasSuffix(name, ".service")}
	for _, v := range f.Values("Install", "WantedBy") {
		d.wantedBy = append(d.wantedBy, strings.Fields(v)...)
	}
	if !d.service {
		return d
	}
	execs := f.Values("Service", "ExecStart")
	if len(execs) == 0 && !slices.Contains(f.Values("Service", "Type"), "oneshot") {
		d.badSet = true // systemd refuses a service with no ExecStart=
	}
	if len(execs) > 0 {
		switch program(execs[len(execs)-1]) {
		case "false":
			d.exits, d.fails = true, true
		case "true":
			d.exits = true
		}
	}
	remain := f.Values("Service", "RemainAfterExit")
	d.remain = len(remain) > 0 && truthy(remain[len(remain)-1])
	return d
}

// program is the base name of the program an ExecStart= line runs.
func program(exec string) string {
	fields := strings.Fields(exec)
	if len(fields) == 0 {
		return ""
	}
	return path.Base(strings.TrimLeft(fields[0], "-@+!:"))
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "yes", "true", "on":
		return true
	}
	return false
}

// Start starts name and the units that want it.
func (m *Manager) Start(ctx context.Context, name string) error {
	if err := m.up(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	def := m.loaded[name]
	if def == nil {
		return &NoSuchUnitError{Op: "start", Unit: name}
	}
	if def.bad {
		return fmt.Errorf("start %s: unit failed to load", name)
	}
	if def.badSet {
		return fmt.Errorf("start %s: Unit %s has a bad unit file setting.", name, name)
	}
	m.startLocked(name, def)
	for _, w := range m.wants[name] {
		if d := m.loaded[w]; d != nil && !d.bad && !d.badSet {
			m.startLocked(w, d)
		}
	}
	return nil
}

func (m *Manager) startLocked(name string, def *definition) {
	if m.run[name].active == activeActive {
		return
	}
	before := m.stateLocked(name)
	next := runState{active: activeActive, sub: subActive}
	if def.service {
		switch {
		case def.fails:
			next = runState{active: activeFailed, sub: subFailed}
		case def.exits && def.remain:
			next = runState{active: activeActive, sub: subExited}
		case def.exits:
			next = runState{}
		default:
			m.nextPID++
			next = runState{active: activeActive, sub: subRunning, pid: m.nextPID}
		}
	}
	m.setRunLocked(name, next)
	m.notifyIfChanged(name, before)
}

// Stop stops name. A failed unit stays failed until ResetFailed.
func (m *Manager) Stop(ctx context.Context, name string) error {
	if err := m.up(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, running := m.run[name]
	if m.loaded[name] == nil && !running {
		return &NoSuchUnitError{Op: "stop", Unit: name}
	}
	if cur.active == activeFailed {
		return nil
	}
	before := m.stateLocked(name)
	m.setRunLocked(name, runState{})
	m.notifyIfChanged(name, before)
	return nil
}

// ResetFailed turns a failed unit inactive; no error if it is not failed or
// unknown.
func (m *Manager) ResetFailed(ctx context.Context, name string) error {
	if err := m.up(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.run[name].active != activeFailed {
		return nil
	}
	before := m.stateLocked(name)
	m.setRunLocked(name, runState{})
	m.notifyIfChanged(name, before)
	return nil
}

// setRunLocked records a unit's runtime state; mu must be held.
func (m *Manager) setRunLocked(name string, rs runState) {
	if rs.isZero() {
		delete(m.run, name)
		return
	}
	m.run[name] = rs
}

// States reports the state of names; unknown units read as not-found.
func (m *Manager) States(ctx context.Context, names []string) (map[string]unit.SystemdState, error) {
	if err := m.up(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]unit.SystemdState, len(names))
	for _, n := range names {
		out[n] = m.stateLocked(n)
	}
	return out, nil
}

// stateLocked is what States reports for name; mu must be held.
func (m *Manager) stateLocked(name string) unit.SystemdState {
	st := unit.SystemdState{LoadState: loadNotFound, ActiveState: activeInactive, SubState: subDead}
	if def := m.loaded[name]; def != nil {
		st.LoadState = loadLoaded
		switch {
		case def.bad:
			st.LoadState = loadError
		case def.badSet:
			st.LoadState = loadBadSetting
		}
	}
	if rs, ok := m.run[name]; ok {
		st.ActiveState, st.SubState, st.MainPID = rs.active, rs.sub, rs.pid
	}
	return st
}

// notifyIfChanged tells every watcher about name if its state differs from
// before; mu must be held.
func (m *Manager) notifyIfChanged(name string, before unit.SystemdState) {
	if m.stateLocked(name) == before {
		return
	}
	for w := range m.watchers {
		w.pending[name] = struct{}{}
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// watcher is one Watch: the names changed since its goroutine last looked.
type watcher struct {
	pending map[string]struct{} // guarded by Manager.mu
	kick    chan struct{}       // 1-buffered: pending is not empty
	lost    chan struct{}       // closed when the manager restarts
}

// Watch delivers batches of names whose state changed until ctx ends, then
// closes the channel. Changes made while the reader is busy are merged into
// the batch waiting for it.
func (m *Manager) Watch(ctx context.Context) (<-chan []string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := &watcher{pending: map[string]struct{}{}, kick: make(chan struct{}, 1), lost: make(chan struct{})}
	m.mu.Lock()
	if m.down {
		m.mu.Unlock()
		return nil, errUnavailable
	}
	m.watchers[w] = struct{}{}
	m.mu.Unlock()
	out := make(chan []string)
	go func() {
		defer close(out)
		defer func() {
			m.mu.Lock()
			delete(m.watchers, w)
			m.mu.Unlock()
		}()
		var (
			batch []string        // sorted, unique names waiting for the reader
			outC  chan<- []string // out while batch is not empty
		)
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.lost:
				return
			case <-w.kick:
				m.mu.Lock()
				for n := range w.pending {
					batch = append(batch, n)
				}
				clear(w.pending)
				m.mu.Unlock()
				slices.Sort(batch)
				batch = slices.Compact(batch)
				if len(batch) > 0 {
					outC = out
				}
			case outC <- batch:
				batch, outC = nil, nil
			}
		}
	}()
	return out, nil
}

// unavailableError is the error of every call while the manager is down.
type unavailableError struct{}

func (unavailableError) Error() string { return "systemdfake: manager unavailable" }

// Unavailable tells callers that the manager cannot be reached, as the
// D-Bus adapter's errors do while systemd restarts.
func (unavailableError) Unavailable() bool { return true }

var errUnavailable error = unavailableError{}

// StopManager is the first half of a restart of the manager: every Watch
// ends, every unit stops (as they do when a user manager exits) and every
// call fails with an error whose Unavailable() is true until StartManager.
func (m *Manager) StopManager() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = true
	for w := range m.watchers {
		close(w.lost)
		delete(m.watchers, w)
	}
	clear(m.run)
	clear(m.loaded)
	clear(m.wants)
}

// StartManager is the second half of a restart: the new manager loads every
// linked unit file, as a manager does when it starts, and nothing runs.
func (m *Manager) StartManager() {
	m.mu.Lock()
	m.down = false
	m.mu.Unlock()
	_ = m.Reload(context.Background())
}

// Restart stops and starts the manager.
func (m *Manager) Restart() {
	m.StopManager()
	m.StartManager()
}

// up fails while the manager is down; mu must not be held.
func (m *Manager) up(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errUnavailable
	}
	return nil
}

// DropConnections ends every Watch, as a lost connection to a manager that
// keeps running (a daemon-reexec, a restart of the bus) does: units keep
// running and calls keep working.
func (m *Manager) DropConnections() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for w := range m.watchers {
		close(w.lost)
		delete(m.watchers, w)
	}
}

// AddHostUnit makes name a unit the host has of its own, at path.
func (m *Manager) AddHostUnit(name, path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.host[name] = path
}

// HostUnit returns the path of the host's own unit name, or "".
func (m *Manager) HostUnit(ctx context.Context, name string) (string, error) {
	if err := m.up(ctx); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.host[name], nil
}
