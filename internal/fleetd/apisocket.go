package fleetd

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// socketMode is the default mode of the unix sockets fleetd creates for
// api_listen (api_socket_mode), whatever the umask: read and write
// (connect) for the owner and the group, nothing for others.
const socketMode fs.FileMode = 0o660

// socketPerm is the mode and group of the API sockets fleetd creates.
type socketPerm struct {
	mode fs.FileMode
	// group is api_socket_group: a group name or number; "" is root's
	// group, set only when fleetd runs as root.
	group string
}

var defaultSocketPerm = socketPerm{mode: socketMode}

// gid resolves the socket's group: -1 leaves the creator's group.
func (p socketPerm) gid() (int, error) {
	if p.group == "" {
		if os.Geteuid() != 0 {
			return -1, nil
		}
		return 0, nil
	}
	if n, err := strconv.Atoi(p.group); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(p.group)
	if err != nil {
		return -1, fmt.Errorf("api_socket_group %q: %w", p.group, err)
	}
	n, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("api_socket_group %q: gid %q: %w", p.group, g.Gid, err)
	}
	return n, nil
}

// apply sets the socket file's group and mode.
func (p socketPerm) apply(path, listen string) error {
	gid, err := p.gid()
	if err != nil {
		return err
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			return fmt.Errorf("api_listen %s: set the socket's group: %w", listen, err)
		}
	}
	if err := os.Chmod(path, p.mode); err != nil {
		return fmt.Errorf("api_listen %s: set the socket's mode: %w", listen, err)
	}
	return nil
}

// maxSocketPath is the longest path a unix socket address holds (108
// bytes of sun_path on Linux, one of them the terminating NUL).
const maxSocketPath = 107

// listenUnix opens the API socket at path. It never removes anything but
// a stale socket: a file of another kind at path, or a socket another
// process answers on (another fleetd), makes it fail. The socket is
// created with perm's mode and group in a private directory next to path and linked
// into place, so that it is never reachable with a wider mode, and a
// socket created at path meanwhile is not replaced.
func listenUnix(path string, perm socketPerm) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create API socket dir: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(path), ".f")
	if err != nil {
		return nil, fmt.Errorf("api_listen %s: create a private directory next to the socket: %w", path, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	if len(tmp) > maxSocketPath {
		return listenUnixInPlace(path, perm)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on unix://%s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := perm.apply(tmp, path); err != nil {
		_ = ln.Close()
		return nil, err
	}
	if err := os.Link(tmp, path); err != nil {
		_ = ln.Close()
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("api_listen %s: another process created the socket meanwhile", path)
		}
		return nil, fmt.Errorf("listen on unix://%s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("api_listen %s: %w", path, err)
	}
	return &unixSocket{UnixListener: ln, path: path, file: fi}, nil
}

// listenUnixInPlace binds path itself, for a path too long for the
// private directory's name: the socket has the umask's mode until the
// chmod right after.
func listenUnixInPlace(path string, perm socketPerm) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on unix://%s: %w", path, err)
	}
	if err := perm.apply(path, path); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return ln, nil
}

// removeStaleSocket removes a socket at path that nothing answers on. A
// missing path is fine; anything else is an error that says what is
// there.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("api_listen %s: %w", path, err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("api_listen %s: a %s is at that path, not a socket: refusing to replace it "+
			"(remove it, or choose another api_listen path)", path, fileKind(fi.Mode()))
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		_ = conn.Close()
		return fmt.Errorf("api_listen %s: another process serves this socket (is another fleetd running?)", path)
	case errors.Is(err, syscall.ECONNREFUSED):
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("api_listen %s: remove the stale socket: %w", path, err)
		}
		return nil
	default:
		return fmt.Errorf("api_listen %s: cannot tell whether another process serves this socket: %w", path, err)
	}
}

// fileKind names the type of a file for messages.
func fileKind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "regular file"
	case fs.ModeDir:
		return "directory"
	case fs.ModeSymlink:
		return "symbolic link"
	case fs.ModeNamedPipe:
		return "named pipe"
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		return "device"
	}
	return "file of another kind"
}

// unixSocket is an API socket linked into place by listenUnix. Its
// address is the path clients use, and closing it removes that path if it
// is still this socket.
type unixSocket struct {
	*net.UnixListener
	path string
	file fs.FileInfo // the socket file at path, as linked
}

// Addr is the socket's path.
func (u *unixSocket) Addr() net.Addr { return &net.UnixAddr{Name: u.path, Net: "unix"} }

// Close stops listening and removes the socket file, unless another
// socket took its path since.
func (u *unixSocket) Close() error {
	err := u.UnixListener.Close()
	if fi, serr := os.Lstat(u.path); serr == nil && os.SameFile(fi, u.file) {
		_ = os.Remove(u.path)
	}
	return err
}
