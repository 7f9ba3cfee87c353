package fleetctl

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// maxTLSFileBytes bounds a certificate, key or CA bundle file.
const maxTLSFileBytes = 4 << 20

// errNotRegular and errTooLarge are wrapped by the errors of
// readRegularFile.
var (
	errNotRegular = errors.New("not a regular file")
	errTooLarge   = errors.New("file too large")
)

// readRegularFile reads the regular file at path, of at most limit bytes.
// It never blocks on a FIFO or a device and never reads more than
// limit+1 bytes: anything but a regular file (or a directory, reported as
// EISDIR) is refused with an error wrapping errNotRegular, a larger file
// with one wrapping errTooLarge.
func readRegularFile(path string, limit int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return nil, err
	case fi.IsDir():
		return nil, &fs.PathError{Op: "read", Path: path, Err: syscall.EISDIR}
	case !fi.Mode().IsRegular():
		return nil, &fileError{msg: fmt.Sprintf("%s is %s", path, fileKind(fi.Mode())), kind: errNotRegular}
	case fi.Size() > limit:
		return nil, tooLarge(path, limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(path, limit) // it grew while read
	}
	return data, nil
}

func tooLarge(path string, limit int64) error {
	return &fileError{msg: fmt.Sprintf("%s is larger than %d bytes (%d KiB)", path, limit, limit>>10), kind: errTooLarge}
}

// fileError is a file readRegularFile refuses: its message, and the
// sentinel it wraps.
type fileError struct {
	msg  string
	kind error
}

func (e *fileError) Error() string { return e.msg }
func (e *fileError) Unwrap() error { return e.kind }

// fileKind describes a file that is not regular.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO), not a regular file"
	case m&fs.ModeCharDevice != 0, m&fs.ModeDevice != 0:
		return "a device, not a regular file"
	case m&fs.ModeSocket != 0:
		return "a socket, not a regular file"
	}
	return "not a regular file"
}
