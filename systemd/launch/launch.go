package launch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
)

// Defaults for the zero values of Options.
const (
	DefaultReadyTimeout = 30 * time.Second
	DefaultGracePeriod  = 10 * time.Second
)

// maxDirLen bounds the runtime directory so that every socket the manager
// and its units create below it stays under the 108-byte sun_path limit.
const maxDirLen = 64

// cleanupTimeout bounds the cleanup Start does after a failure.
const cleanupTimeout = 30 * time.Second

// startScript runs as the manager's PID in its new mount namespace and
// session: it joins the cgroup subtree, hides the host's /run/systemd behind
// a tmpfs holding an empty system/ directory and becomes systemd.
const startScript = `set -e
sd=$1; shift
for f in "$@"; do echo $$ > "$f"; done
mkdir -p /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/system
exec "$sd" --user
`

// Options configure Start.
type Options struct {
	// Dir is the manager's runtime root (its XDG_RUNTIME_DIR); it is created
	// if missing and kept on Stop. "" means a new directory under /tmp that
	// Stop removes. It must be short: sockets live below it.
	Dir string
	// CgroupName is the manager's cgroup subtree below each hierarchy root,
	// such as "fleet/dev-1234". "" derives a unique name.
	CgroupName string
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds how long Start waits for the manager to become
	// ready, on top of ctx; 0 means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// GracePeriod is how long Stop waits after SIGTERM before SIGKILL;
	// 0 means DefaultGracePeriod.
	GracePeriod time.Duration
}

// Manager is a running private systemd --user manager.
type Manager struct {
	cmd    *exec.Cmd
	dir    string
	ownDir bool // dir was created by Start and is removed by Stop
	cg     *cgroupTree
	log    *slog.Logger
	grace  time.Duration

	exited  chan struct{} // closed once the process has been reaped
	waitErr error         // the process's exit status; read only after exited is closed

	mu      sync.Mutex // guards stopped; held for the whole of Stop
	stopped bool
}

// Start launches a manager and returns once it is ready. On failure it
// removes everything it made.
func Start(ctx context.Context, opts Options) (*Manager, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{log: logger, grace: opts.GracePeriod, exited: make(chan struct{})}
	if m.grace <= 0 {
		m.grace = DefaultGracePeriod
	}
	readyTimeout := opts.ReadyTimeout
	if readyTimeout <= 0 {
		readyTimeout = DefaultReadyTimeout
	}

	sd, err := findSystemd()
	if err != nil {
		return nil, err
	}
	cgName := opts.CgroupName
	if cgName == "" {
		cgName = "fleet/launch-" + randomHex(6)
	}
	if err := validCgroupName(cgName); err != nil {
		return nil, fmt.Errorf("check options: %w", err)
	}
	roots, err := cgroupRoots(cgroupBase)
	if err != nil {
		return nil, err
	}

	if err := m.makeDir(opts.Dir); err != nil {
		if m.ownDir {
			if rerr := os.RemoveAll(m.dir); rerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up: %w", rerr))
			}
		}
		return nil, err
	}
	if err := m.start(ctx, sd, roots, cgName, readyTimeout); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if cerr := m.Stop(cctx); cerr != nil {
			return nil, errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
		return nil, err
	}
	logger.Info("systemd user manager ready", "pid", m.PID(), "runtime_dir", m.dir, "cgroup", cgName)
	return m, nil
}

func (m *Manager) start(ctx context.Context, sd string, roots []string, cgName string, readyTimeout time.Duration) error {
	cg, err := createCgroups(roots, cgName)
	m.cg = cg
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(m.LogFile(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open manager log: %w", err)
	}
	defer logFile.Close()

	args := append([]string{"-c", startScript, "fleet-launch", sd}, cg.procsFiles()...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = m.childEnv()
	cmd.Dir = "/"
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:       true,
		Unshareflags: syscall.CLONE_NEWNS, // Go also makes / private in the child
		Pdeathsig:    syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start systemd --user: %w", err)
	}
	m.cmd = cmd
	go func() {
		m.waitErr = cmd.Wait()
		close(m.exited)
	}()

	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := m.waitReady(rctx); err != nil {
		return fmt.Errorf("wait for systemd --user (pid %d): %w%s", cmd.Process.Pid, err, m.logTail())
	}
	return nil
}

// makeDir prepares the runtime root and the XDG directories below it.
func (m *Manager) makeDir(dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("/tmp", "sd")
		if err != nil {
			return fmt.Errorf("create runtime dir: %w", err)
		}
		m.dir, m.ownDir = d, true
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("resolve runtime dir: %w", err)
		}
		m.dir = abs
	}
	if len(m.dir) > maxDirLen {
		return fmt.Errorf("check options: runtime dir %q is longer than %d bytes; unix socket paths below it would not fit", m.dir, maxDirLen)
	}
	for _, sub := range []string{"systemd/user", "config", "data"} {
		if err := os.MkdirAll(filepath.Join(m.dir, sub), 0o700); err != nil {
			return fmt.Errorf("create runtime dir: %w", err)
		}
	}
	if err := os.Chmod(m.dir, 0o700); err != nil {
		return fmt.Errorf("create runtime dir: %w", err)
	}
	return nil
}

func (m *Manager) childEnv() []string {
	env := []string{
		"PATH=" + envOr("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
		"HOME=" + envOr("HOME", "/root"),
		"LANG=C.UTF-8",
		// Without a journal the manager would fall back to the kernel log.
		"SYSTEMD_LOG_TARGET=console",
	}
	return append(env, m.Env()...)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// waitReady polls until the private socket answers with SystemState running
// or degraded, the process exits or ctx ends.
func (m *Manager) waitReady(ctx context.Context) error {
	const poll = 10 * time.Millisecond
	t := time.NewTicker(poll)
	defer t.Stop()
	var lastErr error
	for {
		select {
		case <-m.exited:
			return fmt.Errorf("manager exited: %v", m.waitErr)
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		case <-t.C:
		}
		if _, err := os.Stat(m.PrivateSocket()); err != nil {
			lastErr = err
			continue
		}
		state, err := systemState(ctx, m.PrivateSocket())
		if err != nil {
			lastErr = err
			continue
		}
		if state == "running" || state == "degraded" {
			return nil
		}
		lastErr = fmt.Errorf("system state is %q", state)
	}
}

// systemState asks the manager behind socket for its SystemState over a
// peer-to-peer D-Bus connection.
func systemState(ctx context.Context, socket string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	conn, err := dbus.Dial("unix:path="+socket, dbus.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("dial private socket: %w", err)
	}
	defer conn.Close()
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		return "", fmt.Errorf("authenticate: %w", err)
	}
	obj := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
	// systemd can leave a message that arrives together with the end of
	// authentication unread until more data comes in; a throwaway message
	// first keeps the real call from waiting.
	// (A call that expects its reply, bounded: godbus can block forever on
	// a no-reply call whose connection closes.)
	pctx, pcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_ = obj.CallWithContext(pctx, "org.freedesktop.DBus.Peer.Ping", 0).Err
	pcancel()
	var v dbus.Variant
	err = obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, "org.freedesktop.systemd1.Manager", "SystemState").
		Store(&v)
	if err != nil {
		return "", fmt.Errorf("get SystemState: %w", err)
	}
	s, ok := v.Value().(string)
	if !ok {
		return "", fmt.Errorf("get SystemState: unexpected type %s", v.Signature())
	}
	return s, nil
}

// PID is the process ID of systemd itself.
func (m *Manager) PID() int { return m.cmd.Process.Pid }

// RuntimeDir is the manager's XDG_RUNTIME_DIR.
func (m *Manager) RuntimeDir() string { return m.dir }

// PrivateSocket is the manager's peer-to-peer D-Bus socket.
func (m *Manager) PrivateSocket() string { return filepath.Join(m.dir, "systemd", "private") }

// LogFile is where the manager's own output goes.
func (m *Manager) LogFile() string { return filepath.Join(m.dir, "systemd.log") }

// Env is the environment that points `systemctl --user` and D-Bus clients at
// this manager. Unit file operations of systemctl only reach the manager from
// inside its mount namespace (nsenter -t PID -m), where /run/systemd/system
// exists.
func (m *Manager) Env() []string {
	return []string{
		"XDG_RUNTIME_DIR=" + m.dir,
		"XDG_CONFIG_HOME=" + filepath.Join(m.dir, "config"),
		"XDG_DATA_HOME=" + filepath.Join(m.dir, "data"),
		"DBUS_SESSION_BUS_ADDRESS=unix:path=" + filepath.Join(m.dir, "bus"),
	}
}

// Stop terminates the manager and removes its cgroups and, if Start created
// it, its runtime directory. Calling it again after it succeeded does
// nothing; after a failure it retries what is left.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return nil
	}
	var errs []error
	if err := m.terminate(ctx); err != nil {
		errs = append(errs, err)
	}
	if m.cg != nil {
		if err := m.cg.remove(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && m.ownDir && m.dir != "" {
		if err := os.RemoveAll(m.dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove runtime dir: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop systemd --user: %w", err)
	}
	m.stopped = true
	if m.cmd != nil {
		m.log.Info("systemd user manager stopped", "pid", m.cmd.Process.Pid)
	}
	return nil
}

// terminate sends SIGTERM, waits for the grace period, then SIGKILL, and
// returns once the process has been reaped.
func (m *Manager) terminate(ctx context.Context) error {
	if m.cmd == nil {
		return nil
	}
	select {
	case <-m.exited:
		return nil
	default:
	}
	// Process.Signal goes through a pidfd, so it cannot hit a reused PID.
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send SIGTERM: %w", err)
	}
	grace := time.NewTimer(m.grace)
	defer grace.Stop()
	select {
	case <-m.exited:
		return nil
	case <-grace.C:
		m.log.Warn("systemd user manager ignored SIGTERM, killing it", "pid", m.cmd.Process.Pid, "grace", m.grace)
	case <-ctx.Done():
	}
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send SIGKILL: %w", err)
	}
	select {
	case <-m.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for exit after SIGKILL: %w", ctx.Err())
	}
}

// logTail returns the end of the manager's log for error messages.
func (m *Manager) logTail() string {
	f, err := os.Open(m.LogFile())
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 2048
	if st, err := f.Stat(); err == nil && st.Size() > max {
		if _, err := f.Seek(st.Size()-max, io.SeekStart); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(f)
	if err != nil || len(b) == 0 {
		return ""
	}
	return "; manager log:\n" + string(b)
}

// findSystemd looks for the systemd binary in its usual places.
func findSystemd() (string, error) {
	paths := []string{"/usr/lib/systemd/systemd", "/lib/systemd/systemd"}
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("find systemd: none of %v exists", paths)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
