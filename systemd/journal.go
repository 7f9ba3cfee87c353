package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultJournalSocket is journald's native socket. While it does not
// exist, journald is not running and there is no journal to read.
const DefaultJournalSocket = "/run/systemd/journal/socket"

// ErrJournalUnavailable matches (errors.Is) the error of reading a journal
// on a host where journald does not run.
var ErrJournalUnavailable = errors.New("systemd: journal unavailable")

// JournalUnavailableError says why there is no journal to read. It matches
// ErrJournalUnavailable and has a JournalUnavailable() bool method for
// callers that do not import this package.
type JournalUnavailableError struct {
	Reason string // e.g. "journald is not running (no /run/systemd/journal/socket)"
}

func (e *JournalUnavailableError) Error() string { return "journal unavailable: " + e.Reason }

// Is makes the error match ErrJournalUnavailable.
func (e *JournalUnavailableError) Is(target error) bool { return target == ErrJournalUnavailable }

// JournalUnavailable lets callers recognise the error through a
// one-method interface.
func (e *JournalUnavailableError) JournalUnavailable() bool { return true }

// JournalConfig configures NewJournal.
type JournalConfig struct {
	// Socket is journald's native socket; "" means DefaultJournalSocket.
	Socket string
	// Command is the journalctl program; "" means "journalctl" on PATH.
	Command string
	// User selects the units of the calling user's manager
	// (journalctl --user-unit) instead of the system manager's (--unit).
	User bool
}

// JournalOptions select what Read returns.
type JournalOptions struct {
	Lines  int    // the last Lines entries; 0 = journalctl's default
	Follow bool   // keep streaming new entries until the context ends
	Output string // journalctl --output mode; "" = journalctl's default (short)
	Quiet  bool   // leave out informational lines such as "-- No entries --"
}

// Journal reads units' logs by running journalctl. It is safe for
// concurrent use; each Read runs its own journalctl.
type Journal struct {
	socket  string
	command string
	user    bool
}

// NewJournal returns a journal reader for the manager cfg.User selects.
func NewJournal(cfg JournalConfig) *Journal {
	j := &Journal{socket: cfg.Socket, command: cfg.Command, user: cfg.User}
	if j.socket == "" {
		j.socket = DefaultJournalSocket
	}
	if j.command == "" {
		j.command = "journalctl"
	}
	return j
}

// UserManager reports whether m talks to a user manager: over the session
// bus, or over a private socket other than the system manager's.
func (m *Manager) UserManager() bool {
	switch m.dial.kind {
	case busSession:
		return true
	case busPrivate:
		return m.dial.socket != "/run/systemd/private"
	}
	return false
}

// journalStderrMax bounds how much of journalctl's error output is kept.
const journalStderrMax = 4 << 10

// journalWaitDelay bounds how long Close waits for journalctl's output
// pipes once the process is gone.
const journalWaitDelay = 5 * time.Second

// Read starts journalctl for the named unit and returns its output as it
// comes. It returns an error matching ErrJournalUnavailable, before
// starting anything, when journald's socket does not exist or journalctl
// cannot be found. The stream ends at the end of the output; with
// opts.Follow only when ctx ends or the stream is closed. Close stops
// journalctl if it still runs and waits for it; it returns an error, with
// journalctl's error output, only if journalctl failed on its own.
func (j *Journal) Read(ctx context.Context, name string, opts JournalOptions) (io.ReadCloser, error) {
	if err := j.available(); err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("journal of %s: create pipe: %w", name, err)
	}
	stderr := &cappedBuffer{max: journalStderrMax}
	cmd := exec.CommandContext(ctx, j.command, journalArgs(name, opts, j.user)...)
	cmd.Stdout = pw
	cmd.Stderr = stderr
	cmd.WaitDelay = journalWaitDelay
	cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0")
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return nil, fmt.Errorf("journal of %s: start %s: %w", name, j.command, err)
	}
	_ = pw.Close() // the child holds the write end now
	return &journalStream{ctx: ctx, name: name, cmd: cmd, out: pr, stderr: stderr}, nil
}

// available checks that journald runs and journalctl exists.
func (j *Journal) available() error {
	fi, err := os.Stat(j.socket)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &JournalUnavailableError{Reason: "journald is not running (no " + j.socket + ")"}
	case err != nil:
		return &JournalUnavailableError{Reason: "journald's socket: " + err.Error()}
	case fi.Mode().Type() != fs.ModeSocket:
		return &JournalUnavailableError{Reason: "journald is not running (" + j.socket + " is not a socket)"}
	}
	if _, err := exec.LookPath(j.command); err != nil {
		return &JournalUnavailableError{Reason: "no journalctl: " + err.Error()}
	}
	return nil
}

// journalArgs are journalctl's arguments for reading name's journal.
func journalArgs(name string, opts JournalOptions, user bool) []string {
	args := []string{"--no-pager"}
	if user {
		args = append(args, "--user-unit="+name)
	} else {
		args = append(args, "--unit="+name)
	}
	if opts.Lines > 0 {
		args = append(args, "--lines="+strconv.Itoa(opts.Lines))
	}
	if opts.Output != "" {
		args = append(args, "--output="+opts.Output)
	}
	if opts.Follow {
		args = append(args, "--follow")
	}
	if opts.Quiet {
		args = append(args, "--quiet")
	}
	return args
}

// journalStream is journalctl's standard output.
type journalStream struct {
	ctx    context.Context
	name   string
	cmd    *exec.Cmd
	out    *os.File
	stderr *cappedBuffer

	eof atomic.Bool // Read reached the end: journalctl ended by itself

	closeOnce sync.Once
	closeErr  error
}

func (s *journalStream) Read(p []byte) (int, error) {
	n, err := s.out.Read(p)
	if errors.Is(err, io.EOF) {
		s.eof.Store(true)
	}
	return n, err
}

// Close stops journalctl if it still runs and reaps it.
func (s *journalStream) Close() error {
	s.closeOnce.Do(func() {
		_ = s.out.Close() // journalctl writing after this gets EPIPE and exits
		// A journalctl that still runs (following, or stopped early) is
		// ended here; ending it is not a failure.
		stopped := s.cmd.Process.Signal(os.Interrupt) == nil
		done := make(chan error, 1)
		go func() { done <- s.cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(journalWaitDelay):
			_ = s.cmd.Process.Kill()
			err = <-done
		}
		if err == nil || s.ctx.Err() != nil {
			return
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && stopped && (!ee.Exited() || !s.eof.Load()) {
			// Ended by our signal, or by the pipe we closed before it had
			// finished (EPIPE makes it exit 1): not a failure.
			return
		}
		msg := strings.TrimSpace(s.stderr.String())
		if msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		s.closeErr = fmt.Errorf("journal of %s: journalctl: %w", s.name, err)
	})
	return s.closeErr
}

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	max int

	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
