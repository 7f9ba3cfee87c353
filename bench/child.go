package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The suite runs etcd, the engine and the simulated agents as child
// processes of its own binary, so that each one's CPU time and memory can
// be read from /proc. A child writes one JSON envelope when it is ready,
// then answers each command line it reads on stdin with one envelope. It
// stops when stdin closes.

// envelope is one message from a child.
type envelope struct {
	Error string          `json:"error,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
}

// child is a running child process.
type child struct {
	role string
	cmd  *exec.Cmd
	in   io.WriteCloser
	dec  *json.Decoder
	done chan struct{} // closed when the process has exited

	mu sync.Mutex // serialises commands
}

// startChild runs this binary with role and args and waits until the child
// reports ready, decoding its ready message into ready.
func startChild(ctx context.Context, role string, args []string, ready any) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	cmd := exec.Command(exe, append([]string{role}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	c := &child{role: role, cmd: cmd, in: in, dec: json.NewDecoder(bufio.NewReader(out)), done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	if err := c.receive(ctx, ready); err != nil {
		c.kill()
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	return c, nil
}

// PID is the child's process ID.
func (c *child) PID() int { return c.cmd.Process.Pid }

// call sends a command and decodes the reply into reply (may be nil).
func (c *child) call(ctx context.Context, command string, reply any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.in, command+"\n"); err != nil {
		return fmt.Errorf("%s %s: %w", c.role, command, err)
	}
	if err := c.receive(ctx, reply); err != nil {
		return fmt.Errorf("%s %s: %w", c.role, command, err)
	}
	return nil
}

func (c *child) receive(ctx context.Context, into any) error {
	got := make(chan error, 1)
	go func() {
		var env envelope
		if err := c.dec.Decode(&env); err != nil {
			got <- fmt.Errorf("read reply: %w", err)
			return
		}
		if env.Error != "" {
			got <- errors.New(env.Error)
			return
		}
		if into != nil && len(env.Body) > 0 {
			got <- json.Unmarshal(env.Body, into)
			return
		}
		got <- nil
	}()
	select {
	case err := <-got:
		return err
	case <-c.done:
		// The reply may have been written just before the exit.
		select {
		case err := <-got:
			return err
		case <-time.After(time.Second):
			return errors.New("process exited")
		}
	case <-ctx.Done():
		c.kill()
		return ctx.Err()
	}
}

// stop closes the child's stdin and waits for it to exit, killing it if
// it has not exited when ctx ends.
func (c *child) stop(ctx context.Context) error {
	_ = c.in.Close()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		c.kill()
		return fmt.Errorf("stop %s: %w", c.role, ctx.Err())
	}
}

// signal sends sig to the child.
func (c *child) signal(sig syscall.Signal) error {
	if err := c.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", c.role, err)
	}
	return nil
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// serveChild is the child side: it sends ready, then answers the commands
// read from in with handle until in closes.
func serveChild(ctx context.Context, in io.Reader, out io.Writer, ready any, handle func(ctx context.Context, command string) (any, error)) error {
	enc := json.NewEncoder(out)
	send := func(body any, err error) error {
		var env envelope
		if err != nil {
			env.Error = err.Error()
		} else if body != nil {
			b, merr := json.Marshal(body)
			if merr != nil {
				env.Error = merr.Error()
			}
			env.Body = b
		}
		return enc.Encode(env)
	}
	if err := send(ready, nil); err != nil {
		return fmt.Errorf("send ready: %w", err)
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		command := strings.TrimSpace(sc.Text())
		if command == "" {
			continue
		}
		body, err := handle(ctx, command)
		if err := send(body, err); err != nil {
			return fmt.Errorf("send reply: %w", err)
		}
	}
	return sc.Err()
}
