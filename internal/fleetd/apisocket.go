package fleetd

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// socketMode is the mode of the unix sockets fleetd creates for
// api_listen, whatever the umask: read and write (connect) for the owner
// and the group, nothing for others.
const socketMode fs.FileMode = 0o660

// maxSocketPath is the longest path a unix socket address holds (108
// bytes of sun_path on Linux, one of them the terminating NUL).
const maxSocketPath = 107

// listenUnix opens the API socket at path. It never removes anything but
// a stale socket: a file of another kind at path, or a socket another
// process answers on (another fleetd), makes it fail. The socket is
// created with socketMode in a private directory next to path and linked
// into place, so that it is never reachable with a wider mode, and a
// socket created at path meanwhile is not replaced.
func listenUnix(path string) (net.Listener, error) {
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
		return listenUnixInPlace(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on unix://%s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, socketMode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("api_listen %s: set the socket's mode: %w", path, err)
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
func listenUnixInPlace(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on unix://%s: %w", path, err)
	}
	if err := os.Chmod(path, socketMode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("api_listen %s: set the socket's mode: %w", path, err)
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
