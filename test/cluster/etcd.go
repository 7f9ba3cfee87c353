package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// memberReadyTimeout bounds how long a member process may take to serve.
// A member serves once its cluster has a leader, which needs a quorum.
const memberReadyTimeout = 2 * time.Minute

// EtcdMember is one etcd member running as its own process (see
// Options.EtcdProcess and Options.EtcdMembers). Its peer and client URLs are
// unix sockets in the cluster's etcd directory, so a member killed and
// started again is found where it was; hosts and the harness reach its client
// socket through TCP proxies.
type EtcdMember struct {
	c       *Cluster
	Index   int
	Name    string
	DataDir string
	// Socket is the member's client socket (a unix socket path).
	Socket string
	args   []string
	proxy  *Proxy // the harness's own, never cut: what Cluster.Endpoints name

	mu     sync.Mutex // guards cmd, exited and frozen
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been reaped
	frozen bool
}

// startEtcdProcesses starts n member processes (n = 1 uses short raft ticks,
// as the embedded etcd does) and waits until every one serves.
func (c *Cluster) startEtcdProcesses(n int) {
	t := c.t
	dir, err := os.MkdirTemp("", "fe")
	if err != nil {
		t.Fatal(err)
	}
	c.etcdDir = dir
	// Registered first among the etcd cleanups, so it runs after every
	// member has been killed.
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var peers []string
	for i := range n {
		peers = append(peers, fmt.Sprintf("m%d=unix://m%d-peer:1", i, i))
	}
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		m := &EtcdMember{c: c, Index: i, Name: name, DataDir: filepath.Join(dir, name),
			Socket: filepath.Join(dir, name+"-client:1")}
		m.args = []string{"-name", name, "-data", m.DataDir, "-peer", "unix://" + name + "-peer:1",
			"-client", "unix://" + name + "-client:1", "-cluster", strings.Join(peers, ",")}
		if n == 1 {
			m.args = append(m.args, "-fast")
		}
		p, err := NewProxy("unix:" + m.Socket)
		if err != nil {
			t.Fatal(err)
		}
		m.proxy = p
		t.Cleanup(p.Close)
		t.Cleanup(func() {
			if err := m.Kill(); err != nil {
				t.Errorf("etcd member %s: %v", name, err)
			}
			if t.Failed() {
				t.Logf("--- etcd member %s log (warnings) ---\n%s", name, tail(filepath.Join(dir, name+".log"), 8<<10))
			}
		})
		c.Members = append(c.Members, m)
		c.Endpoints = append(c.Endpoints, "http://"+p.Addr())
	}
	// Members of a new cluster wait for each other: start all, then wait.
	ready := make([]<-chan error, n)
	for i, m := range c.Members {
		r, err := m.launch()
		if err != nil {
			t.Fatalf("etcd member %s: %v", m.Name, err)
		}
		ready[i] = r
	}
	for i, m := range c.Members {
		if err := <-ready[i]; err != nil {
			t.Fatalf("etcd member %s: %v", m.Name, err)
		}
	}
	c.Endpoint = c.Endpoints[0]
}

// launch starts the member's process and returns a channel that yields nil
// once it serves, or why it did not.
func (m *EtcdMember) launch() (<-chan error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return nil, errors.New("already running")
	}
	logf, err := os.OpenFile(filepath.Join(m.c.etcdDir, m.Name+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(m.c.bins, "etcdserver"), m.args...)
	cmd.Dir = m.c.etcdDir // the unix socket URLs are relative to it
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	exited := make(chan struct{})
	m.cmd, m.exited, m.frozen = cmd, exited, false
	ready := make(chan error, 1)
	go func() {
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			ready <- fmt.Errorf("exited before serving (see %s.log): %w", m.Name, err)
		} else {
			ready <- nil
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(exited)
	}()
	timed := make(chan error, 1)
	go func() {
		select {
		case err := <-ready:
			timed <- err
		case <-time.After(memberReadyTimeout):
			timed <- fmt.Errorf("not serving after %s", memberReadyTimeout)
		}
	}()
	return timed, nil
}

// Start starts a stopped member again on its data and waits until it
// serves (it rejoins its cluster).
func (m *EtcdMember) Start() error {
	ready, err := m.launch()
	if err != nil {
		return fmt.Errorf("etcd member %s: %w", m.Name, err)
	}
	if err := <-ready; err != nil {
		return fmt.Errorf("etcd member %s: %w", m.Name, err)
	}
	return nil
}

// Kill stops the member with SIGKILL (resuming it first if frozen) and
// waits until it has been reaped. Its data stays. Killing a stopped member
// does nothing.
func (m *EtcdMember) Kill() error {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd, m.frozen = nil, false
	m.mu.Unlock()
	if cmd == nil {
		return nil
	}
	// Process.Signal goes through a pidfd: it cannot hit a reused PID.
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("etcd member %s (pid %d) still there 30s after SIGKILL", m.Name, cmd.Process.Pid)
	}
}

// Running reports whether the member's process was started and not killed.
func (m *EtcdMember) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// PID is the member's process ID, or 0 when it is not running.
func (m *EtcdMember) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// setFrozen stops (SIGSTOP) or resumes (SIGCONT) a running member.
func (m *EtcdMember) setFrozen(freeze bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return nil
	}
	sig := syscall.SIGCONT
	if freeze {
		sig = syscall.SIGSTOP
	}
	if err := m.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal etcd member %s: %w", m.Name, err)
	}
	m.frozen = freeze
	return nil
}

// FreezeEtcd stops (SIGSTOP) or resumes (SIGCONT) every etcd member process.
func (c *Cluster) FreezeEtcd(freeze bool) {
	c.t.Helper()
	if err := c.FreezeEtcdErr(freeze); err != nil {
		c.t.Fatal(err)
	}
}

// FreezeEtcdErr is FreezeEtcd returning errors instead of failing the test.
func (c *Cluster) FreezeEtcdErr(freeze bool) error {
	if len(c.Members) == 0 {
		return errors.New("freezing etcd needs Options.EtcdProcess or Options.EtcdMembers")
	}
	var errs []error
	for _, m := range c.Members {
		errs = append(errs, m.setFrozen(freeze))
	}
	return errors.Join(errs...)
}

// EtcdLeader asks every running member for its view and returns the member
// that leads, if the running members agree on one.
func (c *Cluster) EtcdLeader(ctx context.Context) (*EtcdMember, error) {
	ids := map[uint64]*EtcdMember{}
	leaders := map[uint64]bool{}
	var errs []error
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		id, leader, err := m.status(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ids[id] = m
		if leader != 0 {
			leaders[leader] = true
		}
	}
	if len(leaders) != 1 {
		return nil, fmt.Errorf("etcd members name %d leaders: %w", len(leaders), errors.Join(errs...))
	}
	for id := range leaders {
		if m := ids[id]; m != nil {
			return m, nil
		}
	}
	return nil, fmt.Errorf("the etcd leader did not answer: %w", errors.Join(errs...))
}

// status returns the member's ID and the leader it knows of (0 if none).
func (m *EtcdMember) status(ctx context.Context) (id, leader uint64, err error) {
	ep := "http://" + m.proxy.Addr()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, 0, fmt.Errorf("etcd member %s: %w", m.Name, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, ep)
	if err != nil {
		return 0, 0, fmt.Errorf("etcd member %s: status: %w", m.Name, err)
	}
	return st.Header.MemberId, st.Leader, nil
}

// tail returns at most n bytes from the end of file.
func tail(file string, n int64) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		if _, err := f.Seek(st.Size()-n, io.SeekStart); err != nil {
			return ""
		}
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
