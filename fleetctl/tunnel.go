package fleetctl

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// openAPITunnel makes the API at endpoint reachable through the --tunnel
// bastion and returns the local endpoint to use instead, with the TLS
// configuration for it. A unix endpoint is reached by running
// "fleetctl fd-forward <path>" on the bastion, a TCP endpoint by a
// direct-tcpip channel from the bastion. The local end is a unix socket in
// a private directory, or for https a loopback port (the TLS server name
// stays the endpoint's host). Everything is released by cli.close.
func (c *cli) openAPITunnel(ctx context.Context, endpoint string, tlsConf *tls.Config) (string, *tls.Config, error) {
	u, err := url.Parse(endpoint)
	if err != nil || !strings.Contains(endpoint, "://") {
		return "", nil, fmt.Errorf("parse endpoint %q for the tunnel: URL scheme undefined", endpoint)
	}
	t := &apiTunnel{log: c.log, conns: map[net.Conn]struct{}{}}
	switch u.Scheme {
	case "unix":
		t.open = t.fdForward(u.Path)
	case "http", "https":
		t.open = t.tcpForward(hostPort(u))
	default:
		return "", nil, fmt.Errorf("unsupported URL scheme %q for the tunnel", u.Scheme)
	}
	bastion, err := c.dialSSH(ctx, sshAddr(c.global.tunnel), true, false)
	if err != nil {
		return "", nil, fmt.Errorf("open tunnel: %w", err)
	}
	t.ssh = bastion
	local, err := t.listen(u.Scheme == "https")
	if err != nil {
		bastion.Close()
		return "", nil, err
	}
	c.closers = append(c.closers, t.Close)
	t.wg.Add(1)
	go t.serve()
	if u.Scheme == "https" {
		if tlsConf == nil {
			tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		} else {
			tlsConf = tlsConf.Clone()
		}
		if tlsConf.ServerName == "" {
			tlsConf.ServerName = u.Hostname()
		}
		return "https://" + local, tlsConf, nil
	}
	return local, tlsConf, nil
}

// hostPort is the host:port of an http(s) URL, with the scheme's port if
// none is given.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// apiTunnel forwards the local API connections of one command over SSH.
type apiTunnel struct {
	ssh *sshClient
	// open forwards one local connection until either side is done.
	open func(local net.Conn) error
	log  *slog.Logger
	ln   net.Listener
	dir  string // private directory of the unix socket; "" for TCP
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// listen opens the local end: a loopback TCP port when tcp, else a unix
// socket in a new private directory. It returns the address clients use
// (host:port, or a unix:// endpoint).
func (t *apiTunnel) listen(tcp bool) (string, error) {
	if tcp {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("listen for the tunnel: %w", err)
		}
		t.ln = ln
		return ln.Addr().String(), nil
	}
	dir, err := os.MkdirTemp("", "fleetctl-tunnel-")
	if err != nil {
		return "", fmt.Errorf("create tunnel socket directory: %w", err)
	}
	sock := filepath.Join(dir, "fleet.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("listen for the tunnel: %w", err)
	}
	t.ln, t.dir = ln, dir
	return "unix://" + sock, nil
}

func (t *apiTunnel) serve() {
	defer t.wg.Done()
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			return // closed
		}
		t.mu.Lock()
		t.conns[conn] = struct{}{}
		t.mu.Unlock()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			if err := t.open(conn); err != nil {
				t.log.Debug("tunnel connection", "err", err)
			}
			conn.Close()
			t.mu.Lock()
			delete(t.conns, conn)
			t.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes every connection and the SSH connection,
// and removes the socket directory.
func (t *apiTunnel) Close() error {
	err := t.ln.Close()
	t.mu.Lock()
	for conn := range t.conns {
		conn.Close()
	}
	t.mu.Unlock()
	if cerr := t.ssh.Close(); err == nil {
		err = cerr
	}
	t.wg.Wait()
	if t.dir != "" {
		if rerr := os.RemoveAll(t.dir); err == nil {
			err = rerr
		}
	}
	return err
}

// tcpForward forwards connections to addr, dialled from the bastion.
func (t *apiTunnel) tcpForward(addr string) func(net.Conn) error {
	return func(local net.Conn) error {
		remote, err := t.ssh.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("dial %s through the tunnel: %w", addr, err)
		}
		defer remote.Close()
		pipe(local, remote, remote)
		return nil
	}
}

// fdForward forwards connections to the unix socket path on the bastion
// through "fleetctl fd-forward <path>".
func (t *apiTunnel) fdForward(path string) func(net.Conn) error {
	return func(local net.Conn) error {
		sess, err := t.ssh.NewSession()
		if err != nil {
			return fmt.Errorf("open tunnel session: %w", err)
		}
		defer sess.Close()
		stdin, err := sess.StdinPipe()
		if err != nil {
			return fmt.Errorf("tunnel session stdin: %w", err)
		}
		stdout, err := sess.StdoutPipe()
		if err != nil {
			return fmt.Errorf("tunnel session stdout: %w", err)
		}
		if err := sess.Start("fleetctl fd-forward " + shellQuote(path)); err != nil {
			return fmt.Errorf("start fd-forward on the tunnel: %w", err)
		}
		pipe(local, stdout, stdin)
		return sess.Wait()
	}
}

// pipe copies local to w and r to local until r ends, then closes local
// (which ends the first copy) and w.
func pipe(local net.Conn, r io.Reader, w io.WriteCloser) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(w, local) // ends when local is closed below
		w.Close()
	}()
	_, _ = io.Copy(local, r)
	local.Close()
	<-done
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-@%+=:,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
