package fleetctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshClient is an SSH connection to one machine, possibly through the
// --tunnel bastion. Close closes both.
type sshClient struct {
	*ssh.Client
	agent   agent.ExtendedAgent // the local ssh-agent, for forwarding
	closers []io.Closer         // closed after Client, in order
}

// Close closes the connection, then the bastion and the agent.
func (c *sshClient) Close() error {
	err := c.Client.Close()
	for _, cl := range c.closers {
		// The first error is the interesting one; later ones follow from it.
		if cerr := cl.Close(); err == nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
	}
	return err
}

// sshAddr appends port 22 to a host without a port.
func sshAddr(hostport string) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), "22")
}

// dialSSH connects to addr (host:port) as --ssh-username, authenticating
// with the keys of the ssh-agent at SSH_AUTH_SOCK and checking host keys as
// --strict-host-key-checking says. Unless direct, and with --tunnel set,
// the connection goes through the bastion. forwardAgent offers the local
// agent to sessions that request it.
func (c *cli) dialSSH(ctx context.Context, addr string, direct, forwardAgent bool) (*sshClient, error) {
	ag, agentConn, err := c.sshAgent(ctx)
	if err != nil {
		return nil, err
	}
	checker := c.hostKeyChecker()
	conf := &ssh.ClientConfig{
		User:            c.global.sshUser,
		Auth:            []ssh.AuthMethod{ssh.PublicKeysCallback(ag.Signers)},
		HostKeyCallback: checker.check,
		Timeout:         c.global.sshTimeout,
	}
	out := &sshClient{agent: ag}
	var conn net.Conn
	if c.global.tunnel != "" && !direct {
		bastionAddr := sshAddr(c.global.tunnel)
		bastion, err := c.handshake(ctx, bastionAddr, nil, conf, checker)
		if err != nil {
			agentConn.Close()
			return nil, fmt.Errorf("connect to tunnel %s: %w", bastionAddr, err)
		}
		if conn, err = bastion.DialContext(ctx, "tcp", addr); err != nil {
			bastion.Close()
			agentConn.Close()
			return nil, fmt.Errorf("dial %s through tunnel %s: %w", addr, bastionAddr, err)
		}
		out.closers = append(out.closers, bastion)
	}
	client, err := c.handshake(ctx, addr, conn, conf, checker)
	if err != nil {
		for _, cl := range out.closers {
			cl.Close()
		}
		agentConn.Close()
		return nil, err
	}
	out.Client = client
	out.closers = append(out.closers, agentConn)
	if forwardAgent {
		if err := agent.ForwardToAgent(client, ag); err != nil {
			out.Close()
			return nil, fmt.Errorf("forward ssh-agent: %w", err)
		}
	}
	return out, nil
}

// handshake opens an SSH connection to addr over conn, or over a new TCP
// connection when conn is nil, within --ssh-timeout. A host key refusal
// is returned with the checker's full message.
func (c *cli) handshake(ctx context.Context, addr string, conn net.Conn, conf *ssh.ClientConfig, checker *hostKeyChecker) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, c.global.sshTimeout)
	defer cancel()
	if conn == nil {
		var d net.Dialer
		var err error
		if conn, err = d.DialContext(ctx, "tcp", addr); err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
	}
	// A handshake that outlives the timeout has its connection closed.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sconn, chans, reqs, err := ssh.NewClientConn(conn, addr, conf)
	if !stop() {
		if err == nil {
			sconn.Close()
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, ctx.Err())
	}
	if err != nil {
		conn.Close()
		if kerr := checker.failure(); kerr != nil {
			return nil, kerr
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, err)
	}
	return ssh.NewClient(sconn, chans, reqs), nil
}

// sshAgent connects to the ssh-agent of SSH_AUTH_SOCK, the only source of
// keys, as in fleet.
func (c *cli) sshAgent(ctx context.Context) (agent.ExtendedAgent, net.Conn, error) {
	sock := c.deps.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, noAgentError{}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to ssh-agent at %s: %w", sock, err)
	}
	return agent.NewClient(conn), conn, nil
}

// noAgentError is the error of an SSH connection without ssh-agent.
type noAgentError struct{}

func (noAgentError) Error() string {
	return "SSH_AUTH_SOCK environment variable is not set. Verify ssh-agent is running. " +
		"See the fleetctl documentation for help."
}

// hostKeyChecker returns the host key policy of the global flags.
func (c *cli) hostKeyChecker() *hostKeyChecker {
	return &hostKeyChecker{
		strict: c.global.strictHostKeyChecking,
		path:   expandHome(c.global.knownHostsFile, c.deps.Getenv),
		in:     c.deps.Stdin,
		out:    c.deps.Stderr,
	}
}

// expandHome replaces a leading "~/" with the home directory.
func expandHome(path string, getenv func(string) string) string {
	rest, ok := strings.CutPrefix(path, "~/")
	if !ok {
		return path
	}
	home := getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return path
		}
	}
	return filepath.Join(home, rest)
}

// hostKeyChecker checks SSH host keys against an OpenSSH known_hosts file,
// as fleet did: an unknown host is added after the user answers "yes" to
// a prompt; a changed key is refused with a warning. Without strict
// checking every key is accepted.
type hostKeyChecker struct {
	strict bool
	path   string
	in     io.Reader // answers to the prompt
	out    io.Writer // the prompt and warnings

	mu  sync.Mutex
	err error // why the last key was refused
}

// errHostKeyRefused is the answer "no" to the unknown-host prompt.
var errHostKeyRefused = errors.New("host key verification failed")

// check is an ssh.HostKeyCallback.
func (h *hostKeyChecker) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	if !h.strict {
		return nil
	}
	err := h.verify(hostname, remote, key)
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
	return err
}

// failure is the error of the last refused key, if any.
func (h *hostKeyChecker) failure() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *hostKeyChecker) verify(hostname string, remote net.Addr, key ssh.PublicKey) error {
	known, err := h.lookup(hostname, remote, key)
	if err == nil && known {
		return nil
	}
	var kerr *knownhosts.KeyError
	var rerr *knownhosts.RevokedError
	switch {
	case errors.As(err, &rerr):
		return fmt.Errorf("host key for %s was revoked in %s:%d: host key verification failed",
			hostname, rerr.Revoked.Filename, rerr.Revoked.Line)
	case errors.As(err, &kerr) && len(kerr.Want) > 0:
		return &hostKeyMismatchError{path: h.path, keyType: key.Type(), fingerprint: ssh.FingerprintSHA256(key)}
	case err != nil:
		return err
	}
	fmt.Fprintf(h.out, "The authenticity of host '%s' can't be established.\n", hostname)
	fmt.Fprintf(h.out, "%s key fingerprint is %s.\n", key.Type(), ssh.FingerprintSHA256(key))
	fmt.Fprint(h.out, "Are you sure you want to continue connecting (yes/no)? ")
	answer, err := readLine(h.in)
	if err != nil && answer == "" {
		return fmt.Errorf("read answer: %w", err)
	}
	if strings.TrimSpace(answer) != "yes" {
		return errHostKeyRefused
	}
	if err := h.add(hostname, key); err != nil {
		return err
	}
	fmt.Fprintf(h.out, "Warning: Permanently added '%s' (%s) to the list of known hosts.\n",
		knownhosts.Normalize(hostname), key.Type())
	return nil
}

// lookup checks key against the file. known is false, with a nil error,
// when the file does not exist.
func (h *hostKeyChecker) lookup(hostname string, remote net.Addr, key ssh.PublicKey) (known bool, err error) {
	if _, err := os.Stat(h.path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	cb, err := knownhosts.New(h.path)
	if err != nil {
		return false, fmt.Errorf("read known hosts file: %w", err)
	}
	var kerr *knownhosts.KeyError
	if err := cb(hostname, remote, key); err != nil {
		if errors.As(err, &kerr) && len(kerr.Want) == 0 {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// add appends a line for hostname to the known hosts file, creating it
// and its directory if needed.
func (h *hostKeyChecker) add(hostname string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(h.path), 0o700); err != nil {
		return fmt.Errorf("create known hosts directory: %w", err)
	}
	f, err := os.OpenFile(h.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open known hosts file: %w", err)
	}
	_, werr := fmt.Fprintln(f, knownhosts.Line([]string{hostname}, key))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write known hosts file: %w", werr)
	}
	return nil
}

// readLine reads up to a newline one byte at a time, so that nothing
// after the answer is taken from r (a shell session may read it next).
func readLine(r io.Reader) (string, error) {
	var b bytes.Buffer
	buf := make([]byte, 1)
	for {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return b.String(), nil
			}
			b.WriteByte(buf[0])
		}
		if err != nil {
			return b.String(), err
		}
	}
}

// hostKeyMismatchError is a host whose key differs from the known one.
type hostKeyMismatchError struct {
	path        string
	keyType     string
	fingerprint string
}

func (e *hostKeyMismatchError) Error() string {
	return `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ` + e.keyType + ` key sent by the remote host is
` + e.fingerprint + `.
Please contact your system administrator.
Add correct host key in ` + e.path + ` to get rid of this message.
Host key verification failed.`
}
