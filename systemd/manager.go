package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Config configures New.
type Config struct {
	// UnitsDir holds the unit files; it is created (0755) if missing.
	UnitsDir string
	// User selects the user manager (session bus) instead of the system
	// manager (system bus). Ignored when PrivateSocket is set.
	User bool
	// PrivateSocket, if set, is a manager's private socket
	// (<runtime dir>/systemd/private) to talk to peer to peer, without a bus.
	PrivateSocket string
	// Logger receives job results and watch errors; nil discards them.
	Logger *slog.Logger
}

// Manager drives one systemd manager and a units directory.
//
// Its connection is re-established when it is lost (the manager or the bus
// restarted): a call made while systemd cannot be reached fails with an
// error matching ErrUnavailable, and the next call dials again. Watches do
// not reconnect; they end, and the caller starts a new one.
type Manager struct {
	dial     dialer
	unitsDir string
	log      *slog.Logger

	mu   sync.Mutex    // guards conn and gone
	conn *sd.Conn      // nil after a failed redial
	gone chan struct{} // closed when conn is replaced or closed

	done      chan struct{} // closed by Close; ends watches and job waiters
	closeOnce sync.Once
}

// ErrUnavailable is matched (errors.Is) by errors of calls made while the
// systemd manager cannot be reached. Such errors also have a method
// Unavailable() bool that returns true, for callers that do not import
// this package.
var ErrUnavailable error = unavailableError{}

type unavailableError struct{}

func (unavailableError) Error() string     { return "systemd unavailable" }
func (unavailableError) Unavailable() bool { return true }

// New connects to the manager cfg selects and prepares the units directory.
// ctx bounds connecting only, not the connection's lifetime.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.UnitsDir == "" {
		return nil, errors.New("systemd: empty UnitsDir")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.UnitsDir, 0o755); err != nil {
		return nil, fmt.Errorf("create units dir: %w", err)
	}
	d := dialer{kind: busSystem}
	switch {
	case cfg.PrivateSocket != "":
		d = dialer{kind: busPrivate, socket: cfg.PrivateSocket}
	case cfg.User:
		d = dialer{kind: busSession}
	}
	conn, err := connect(ctx, d)
	if err != nil {
		return nil, err
	}
	logger.Debug("connected to systemd", "bus", d.String())
	return &Manager{
		conn:     conn,
		gone:     make(chan struct{}),
		dial:     d,
		unitsDir: cfg.UnitsDir,
		log:      logger,
		done:     make(chan struct{}),
	}, nil
}

// connect opens the manager's main connection and subscribes to it.
func connect(ctx context.Context, d dialer) (*sd.Conn, error) {
	conn, err := sd.NewConnection(func() (*dbus.Conn, error) { return d.dial(ctx) })
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w: %w", ErrUnavailable, err)
	}
	// Systemd emits job results (and unit signals) on a bus only while some
	// client is subscribed; the result channels of Start and Stop need them.
	if err := callCtx(ctx, conn.Subscribe, conn.Close); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe to systemd: %w: %w", ErrUnavailable, err)
	}
	return conn, nil
}

// c returns a live connection, dialing again if the last one was lost, and
// a channel closed when that connection is given up.
func (m *Manager) c(ctx context.Context) (*sd.Conn, <-chan struct{}, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.done:
		return nil, nil, fmt.Errorf("%w: manager closed", ErrUnavailable)
	default:
	}
	if m.conn != nil && m.conn.Connected() {
		return m.conn, m.gone, nil
	}
	if m.conn != nil {
		m.conn.Close()
		m.conn = nil
		close(m.gone)
		m.gone = make(chan struct{})
		m.log.Warn("connection to systemd lost; reconnecting", "bus", m.dial.String())
	}
	conn, err := connect(ctx, m.dial)
	if err != nil {
		return nil, nil, err
	}
	m.conn = conn
	m.log.Info("reconnected to systemd", "bus", m.dial.String())
	return m.conn, m.gone, nil
}

// call runs f on a live connection. An error on a connection that has
// since dropped is reported as ErrUnavailable.
func (m *Manager) call(ctx context.Context, f func(conn *sd.Conn) error) error {
	conn, _, err := m.c(ctx)
	if err != nil {
		return err
	}
	err = f(conn)
	if err != nil && !conn.Connected() {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// Close ends the connection and every Watch. It is idempotent.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		close(m.done)
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.conn != nil {
			m.conn.Close()
			m.conn = nil
			close(m.gone)
		}
	})
	return nil
}

// Reachable reports whether the system manager (or, if user is set, the
// user manager) answers over D-Bus.
func Reachable(ctx context.Context, user bool) bool {
	d := dialer{kind: busSystem}
	if user {
		d = dialer{kind: busSession}
	}
	conn, err := d.dial(ctx)
	if err != nil {
		return false
	}
	defer conn.Close()
	var v dbus.Variant
	err = conn.Object(sdService, sdPath).
		CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, sdManagerIface, "SystemState").
		Store(&v)
	return err == nil
}

// D-Bus names of systemd's manager object.
const (
	sdService      = "org.freedesktop.systemd1"
	sdPath         = dbus.ObjectPath("/org/freedesktop/systemd1")
	sdManagerIface = "org.freedesktop.systemd1.Manager"
	sdUnitIface    = "org.freedesktop.systemd1.Unit"
	sdServiceIface = "org.freedesktop.systemd1.Service"
	sdUnitPrefix   = "/org/freedesktop/systemd1/unit/"
)

// busKind says how a dialer reaches systemd.
type busKind int

const (
	busSystem  busKind = iota // the system bus
	busSession                // the session bus of the current user
	busPrivate                // a manager's private socket, peer to peer
)

func (k busKind) String() string {
	switch k {
	case busSystem:
		return "system"
	case busSession:
		return "session"
	case busPrivate:
		return "private"
	}
	return "busKind(" + strconv.Itoa(int(k)) + ")"
}

// dialer opens authenticated connections to one systemd manager.
type dialer struct {
	kind   busKind
	socket string // for busPrivate
}

func (d dialer) String() string {
	if d.kind == busPrivate {
		return "private socket " + d.socket
	}
	return d.kind.String() + " bus"
}

// dial opens a new connection, authenticates with EXTERNAL and, on a bus,
// says Hello. ctx bounds the handshake; opts may tie the connection's
// lifetime to a context (dbus.WithContext).
func (d dialer) dial(ctx context.Context, opts ...dbus.ConnOption) (*dbus.Conn, error) {
	var (
		conn *dbus.Conn
		err  error
	)
	switch d.kind {
	case busSystem:
		conn, err = dbus.SystemBusPrivate(opts...)
	case busSession:
		// Never autolaunch: a session bus nobody owns would outlive us.
		conn, err = dbus.SessionBusPrivateNoAutoStartup(opts...)
	case busPrivate:
		conn, err = dbus.Dial("unix:path="+d.socket, opts...)
	default:
		err = fmt.Errorf("unknown bus kind %s", d.kind)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d, err)
	}
	handshake := func() error {
		if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			return fmt.Errorf("authenticate to %s: %w", d, err)
		}
		if d.kind == busPrivate {
			return nil // a peer-to-peer connection has no bus driver to greet
		}
		if err := conn.Hello(); err != nil {
			return fmt.Errorf("hello to %s: %w", d, err)
		}
		return nil
	}
	if err := callCtx(ctx, handshake, func() { conn.Close() }); err != nil {
		conn.Close()
		return nil, err
	}
	if d.kind == busPrivate {
		if err := unstick(ctx, conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("ping %s: %w", d, err)
		}
	}
	return conn, nil
}

// unstickAttempts and unstickWait bound how long unstick waits for a Ping
// to be answered: 5 s in all, which a manager on a busy host needs.
const (
	unstickAttempts = 50
	unstickWait     = 100 * time.Millisecond
)

// unstick makes a fresh peer-to-peer connection usable. systemd (seen with
// 252) leaves bytes that reach its private socket together with the end of
// authentication unread until more data arrives, so the first call on a new
// connection would usually wait forever. unstick sends a throwaway Ping, then
// Pings until one is answered; each new message releases any stuck ones.
func unstick(ctx context.Context, conn *dbus.Conn) error {
	obj := conn.Object(sdService, sdPath)
	const ping = "org.freedesktop.DBus.Peer.Ping"
	// The throwaway Ping expects its reply but does not wait long for it:
	// godbus can block forever on a no-reply call whose connection closes.
	tctx, cancel := context.WithTimeout(ctx, unstickWait)
	_ = obj.CallWithContext(tctx, ping, 0).Err
	cancel()
	var err error
	for range unstickAttempts {
		pctx, cancel := context.WithTimeout(ctx, unstickWait)
		err = obj.CallWithContext(pctx, ping, 0).Err
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// callCtx runs f, which cannot be cancelled itself, and calls abort if ctx
// ends first so that f returns. Once abort has run the result is ctx's error.
func callCtx(ctx context.Context, f func() error, abort func()) error {
	stop := context.AfterFunc(ctx, abort)
	err := f()
	if !stop() {
		if err != nil {
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return ctx.Err()
	}
	return err
}
