package fleetctl

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

// sshServer is an SSH server for the tests, built on x/crypto/ssh: it
// accepts the test agent's key, runs exec requests and shells with
// /bin/sh (and "fleetctl ..." with this package's Main, as the installed
// binary would), opens direct-tcpip channels to loopback addresses and
// answers agent forwarding requests by listing the client's agent keys.
type sshServer struct {
	t      *testing.T
	addr   string // host:port
	hostIP string
	key    ssh.Signer
	config *ssh.ServerConfig

	mu        sync.Mutex
	users     []string
	execs     []string
	shells    int
	ptys      []string // terminal types asked for
	tcpip     []string // direct-tcpip targets
	agentKeys []int    // keys seen through each forwarded agent
}

// newSSHKey returns a new ed25519 signer.
func newSSHKey(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

// startSSHServer listens on ip:port (port 0: any) and accepts clientKey.
func startSSHServer(t *testing.T, ip string, port int, clientKey ssh.PublicKey) (*sshServer, error) {
	t.Helper()
	hostKey, _ := newSSHKey(t)
	s := &sshServer{t: t, hostIP: ip, key: hostKey}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) != string(clientKey.Marshal()) {
				return nil, errors.New("unknown key")
			}
			s.mu.Lock()
			s.users = append(s.users, md.User())
			s.mu.Unlock()
			return &ssh.Permissions{}, nil
		},
	}
	s.config.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serveConn(conn) })
		}
	})
	return s, nil
}

func (s *sshServer) port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

func (s *sshServer) serveConn(conn net.Conn) {
	defer conn.Close()
	sconn, chans, reqs, err := ssh.NewServerConn(conn, s.config)
	if err != nil {
		return
	}
	defer sconn.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, chReqs, err := nc.Accept()
			if err != nil {
				continue
			}
			wg.Go(func() { s.serveSession(sconn, ch, chReqs) })
		case "direct-tcpip":
			var target struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &target); err != nil {
				_ = nc.Reject(ssh.Prohibited, "bad request")
				continue
			}
			ip := target.Host
			if ip == testTLSName { // the bastion's view of DNS
				ip = "127.0.0.1"
			}
			if !net.ParseIP(ip).IsLoopback() {
				_ = nc.Reject(ssh.Prohibited, "loopback targets only")
				continue
			}
			port := strconv.Itoa(int(target.Port))
			s.mu.Lock()
			s.tcpip = append(s.tcpip, net.JoinHostPort(target.Host, port))
			s.mu.Unlock()
			remote, err := net.Dial("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				_ = nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			ch, chReqs, err := nc.Accept()
			if err != nil {
				remote.Close()
				continue
			}
			go ssh.DiscardRequests(chReqs)
			wg.Go(func() {
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(remote, ch)
					remote.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				_, _ = io.Copy(ch, remote)
				ch.CloseWrite()
				<-done
				ch.Close()
				remote.Close()
			})
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "unsupported")
		}
	}
}

// serveSession answers one session's requests until it runs something.
func (s *sshServer) serveSession(conn *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			var pty struct {
				Term string
				Rest []byte `ssh:"rest"`
			}
			_ = ssh.Unmarshal(req.Payload, &pty)
			s.mu.Lock()
			s.ptys = append(s.ptys, pty.Term)
			s.mu.Unlock()
			_ = req.Reply(true, nil)
		case "auth-agent-req@openssh.com":
			_ = req.Reply(true, nil)
			n := -1
			if ach, areqs, err := conn.OpenChannel("auth-agent@openssh.com", nil); err == nil {
				go ssh.DiscardRequests(areqs)
				if keys, err := agent.NewClient(ach).List(); err == nil {
					n = len(keys)
				}
				ach.Close()
			}
			s.mu.Lock()
			s.agentKeys = append(s.agentKeys, n)
			s.mu.Unlock()
		case "exec":
			var cmd struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &cmd); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			s.mu.Lock()
			s.execs = append(s.execs, cmd.Command)
			s.mu.Unlock()
			s.exit(ch, s.runCommand(cmd.Command, ch))
			return
		case "shell":
			_ = req.Reply(true, nil)
			s.mu.Lock()
			s.shells++
			s.mu.Unlock()
			s.exit(ch, s.runShell("", ch))
			return
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// runCommand runs a command line: fleetctl's own with Main, others with sh.
func (s *sshServer) runCommand(command string, ch ssh.Channel) int {
	if rest, ok := strings.CutPrefix(command, "fleetctl "); ok {
		args := strings.Fields(rest)
		for i, a := range args {
			args[i] = strings.Trim(a, "'")
		}
		return Main(context.Background(), args, Deps{Stdin: ch, Stdout: ch, Stderr: ch.Stderr(), Getenv: func(string) string { return "" }})
	}
	return s.runShell(command, ch)
}

// runShell runs sh -c command, or sh reading its script from the channel.
func (s *sshServer) runShell(command string, ch ssh.Channel) int {
	args := []string{}
	if command != "" {
		args = []string{"-c", command}
	}
	cmd := exec.Command("/bin/sh", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return 255
}

func (s *sshServer) exit(ch ssh.Channel, code int) {
	_ = ch.CloseWrite()
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
}

// seen returns a copy of what the server recorded.
func (s *sshServer) seen() (users, execs []string, shells int, ptys, tcpip []string, agentKeys []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.users...), append([]string(nil), s.execs...), s.shells,
		append([]string(nil), s.ptys...), append([]string(nil), s.tcpip...), append([]int(nil), s.agentKeys...)
}

// knownLine is the known_hosts line for s.
func (s *sshServer) knownLine() string {
	return knownhosts.Line([]string{s.addr}, s.key.PublicKey())
}

// startAgent serves a keyring holding key on a unix socket and returns
// the socket path.
func startAgent(t *testing.T, key ed25519.PrivateKey) string {
	t.Helper()
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				_ = agent.ServeAgent(keyring, conn)
			})
		}
	})
	return sock
}

// sshWorld is a simulated cluster whose two machines are SSH servers on
// 127.0.0.1 and 127.0.0.2, on one port, plus a bastion on 127.0.0.1.
type sshWorld struct {
	c          *simCluster
	m1, m2     *sshServer
	bastion    *sshServer
	agentSock  string
	home       string
	knownHosts string
}

// testTLSName is the name of the API's certificate in the tunnel test.
const testTLSName = "example.com"

const (
	sshMachine1 = "aaaa1111cafe0001"
	sshMachine2 = "aaab2222cafe0002"
)

func newSSHWorld(t *testing.T, e *registrytest.Etcd) *sshWorld {
	t.Helper()
	signer, priv := newSSHKey(t)
	w := &sshWorld{agentSock: startAgent(t, priv), home: t.TempDir()}
	w.knownHosts = filepath.Join(w.home, ".fleetctl", "known_hosts")
	var err error
	for range 20 { // the second machine needs the first one's port free on its address
		if w.m1, err = startSSHServer(t, "127.0.0.1", 0, signer.PublicKey()); err != nil {
			t.Fatal(err)
		}
		if w.m2, err = startSSHServer(t, "127.0.0.2", w.m1.port(), signer.PublicKey()); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no port free on both 127.0.0.1 and 127.0.0.2: %v", err)
	}
	if w.bastion, err = startSSHServer(t, "127.0.0.1", 0, signer.PublicKey()); err != nil {
		t.Fatal(err)
	}
	w.c = newSimCluster(t, e, clusterOptions{machines: []unit.Machine{
		{ID: sshMachine1, PublicIP: "127.0.0.1"},
		{ID: sshMachine2, PublicIP: "127.0.0.2"},
	}})
	w.c.addUnit(t, "hello.service", helloUnit, stateLaunched)
	w.c.addUnit(t, "g.service", globalUnit, stateLaunched)
	w.c.addUnit(t, "aaaa.service", helloUnit, stateLaunched)
	w.c.addUnit(t, "idle.service", helloUnit, stateInactive)
	w.c.settle(t)
	return w
}

// trust writes the known hosts file with the given servers.
func (w *sshWorld) trust(t *testing.T, servers ...*sshServer) {
	t.Helper()
	var lines []string
	for _, s := range servers {
		lines = append(lines, s.knownLine())
	}
	if err := os.MkdirAll(filepath.Dir(w.knownHosts), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.knownHosts, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fleetctl runs a command line with the world's agent and home.
func (w *sshWorld) fleetctl(t *testing.T, stdin string, env map[string]string, args ...string) result {
	t.Helper()
	all := map[string]string{"SSH_AUTH_SOCK": w.agentSock, "HOME": w.home}
	for k, v := range env {
		all[k] = v
	}
	return runFleetctl(t, w.c, run{env: all, stdin: stdin, args: args})
}

func TestSSH(t *testing.T) {
	e := registrytest.StartEtcd(t)
	port := func(w *sshWorld) string { return "--ssh-port=" + strconv.Itoa(w.m1.port()) }
	type want struct {
		code   int
		stdout string
		stderr string // after replacing the port with PORT and the home with HOME
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, w *sshWorld)
		stdin string
		env   map[string]string
		args  func(w *sshWorld) []string
		want  want
		check func(t *testing.T, w *sshWorld)
	}{
		{
			name: "unknown host is added after yes", stdin: "yes\n",
			args: func(w *sshWorld) []string { return []string{"ssh", port(w), "--machine=aaaa1", "echo", "hello"} },
			want: want{stdout: "hello\n", stderr: "The authenticity of host '127.0.0.1:PORT' can't be established.\n" +
				"ssh-ed25519 key fingerprint is FP1.\n" +
				"Are you sure you want to continue connecting (yes/no)? " +
				"Warning: Permanently added '[127.0.0.1]:PORT' (ssh-ed25519) to the list of known hosts.\n"},
			check: func(t *testing.T, w *sshWorld) {
				b, err := os.ReadFile(w.knownHosts)
				if err != nil || string(b) != w.m1.knownLine()+"\n" {
					t.Errorf("known hosts file = %q, %v; want %q", b, err, w.m1.knownLine()+"\n")
				}
			},
		},
		{
			name: "unknown host refused", stdin: "no\n",
			args: func(w *sshWorld) []string { return []string{"ssh", port(w), "--machine=aaaa1", "echo", "hello"} },
			want: want{code: ExitError, stderr: "The authenticity of host '127.0.0.1:PORT' can't be established.\n" +
				"ssh-ed25519 key fingerprint is FP1.\n" +
				"Are you sure you want to continue connecting (yes/no)? " +
				"Failed building SSH client: host key verification failed\n"},
			check: func(t *testing.T, w *sshWorld) {
				if _, err := os.Stat(w.knownHosts); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("known hosts file written: %v", err)
				}
				if _, execs, _, _, _, _ := w.m1.seen(); len(execs) > 0 {
					t.Errorf("commands ran: %q", execs)
				}
			},
		},
		{
			name: "changed host key is refused", setup: func(t *testing.T, w *sshWorld) {
				other, _ := newSSHKey(t)
				line := knownhosts.Line([]string{w.m1.addr}, other.PublicKey())
				if err := os.MkdirAll(filepath.Dir(w.knownHosts), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(w.knownHosts, []byte(line+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			args: func(w *sshWorld) []string { return []string{"ssh", port(w), "--machine=aaaa1", "true"} },
			want: want{code: ExitError, stderr: "Failed building SSH client: " +
				"@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n" +
				"@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n" +
				"@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n" +
				"IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n" +
				"Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n" +
				"It is also possible that a host key has just been changed.\n" +
				"The fingerprint for the ssh-ed25519 key sent by the remote host is\n" +
				"FP1.\n" +
				"Please contact your system administrator.\n" +
				"Add correct host key in HOME/.fleetctl/known_hosts to get rid of this message.\n" +
				"Host key verification failed.\n"},
		},
		{
			name: "no strict host key checking", env: map[string]string{"FLEETCTL_STRICT_HOST_KEY_CHECKING": "false"},
			args: func(w *sshWorld) []string { return []string{"ssh", port(w), "--machine=aaaa1", "echo", "hello"} },
			want: want{stdout: "hello\n"},
			check: func(t *testing.T, w *sshWorld) {
				if _, err := os.Stat(w.knownHosts); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("known hosts file written: %v", err)
				}
			},
		},
		{
			name: "known hosts file from the flag", setup: func(t *testing.T, w *sshWorld) {
				w.knownHosts = filepath.Join(w.home, "elsewhere")
				w.trust(t, w.m1)
			},
			args: func(w *sshWorld) []string {
				return []string{"--known-hosts-file=" + w.knownHosts, "ssh", port(w), "--machine=aaaa1", "echo", "hello"}
			},
			want: want{stdout: "hello\n"},
		},
		{
			name: "exit status, stdin and user", setup: func(t *testing.T, w *sshWorld) { w.trust(t, w.m1) },
			stdin: "some input\n", env: map[string]string{"FLEETCTL_SSH_USERNAME": "admin"},
			args: func(w *sshWorld) []string { return []string{"ssh", port(w), "aaaa1", "--", "cat; exit 7"} },
			want: want{code: 7, stdout: "some input\n"},
			check: func(t *testing.T, w *sshWorld) {
				if users, execs, _, _, _, _ := w.m1.seen(); len(users) != 1 || users[0] != "admin" || len(execs) != 1 || execs[0] != "cat; exit 7" {
					t.Errorf("users %q, commands %q", users, execs)
				}
			},
		},
		{
			name: "unit target and agent forwarding", setup: func(t *testing.T, w *sshWorld) { w.trust(t, w.m1) },
			args: func(w *sshWorld) []string {
				return []string{"ssh", "-A", port(w), "hello", "echo", "on", "the", "unit", "machine"}
			},
			want: want{stdout: "on the unit machine\n"},
			check: func(t *testing.T, w *sshWorld) {
				if _, _, _, _, _, keys := w.m1.seen(); len(keys) != 1 || keys[0] != 1 {
					t.Errorf("keys seen through forwarded agents: %v, want [1]", keys)
				}
			},
		},
		{
			name: "shell without a terminal", setup: func(t *testing.T, w *sshWorld) { w.trust(t, w.m1) },
			stdin: "echo from a shell\nexit 5\n",
			args:  func(w *sshWorld) []string { return []string{"ssh", port(w), "--unit=hello.service"} },
			want:  want{code: 5, stdout: "from a shell\n"},
			check: func(t *testing.T, w *sshWorld) {
				if _, _, shells, ptys, _, _ := w.m1.seen(); shells != 1 || len(ptys) != 0 {
					t.Errorf("shells %d, pseudo-terminals %q; want one shell without one", shells, ptys)
				}
			},
		},
		{
			name: "global unit runs the command on every machine", setup: func(t *testing.T, w *sshWorld) { w.trust(t, w.m1, w.m2) },
			args: func(w *sshWorld) []string {
				return []string{"ssh", port(w), "--unit=g", "hostname", "-i", ">/dev/null;", "echo", "ok"}
			},
			want: want{stdout: "==> machine aaaa1111.../127.0.0.1 <==\nok\n\n==> machine aaab2222.../127.0.0.2 <==\nok\n"},
		},
		{
			name: "global unit exit status is the first failure", setup: func(t *testing.T, w *sshWorld) { w.trust(t, w.m1, w.m2) },
			args: func(w *sshWorld) []string { return []string{"ssh", port(w), "g", "test", "-e", "/nonexistent"} },
			want: want{code: 1, stdout: "==> machine aaaa1111.../127.0.0.1 <==\n\n==> machine aaab2222.../127.0.0.2 <==\n"},
		},
		{
			name: "global unit shell needs a machine",
			args: func(w *sshWorld) []string { return []string{"ssh", port(w), "g"} },
			want: want{code: ExitError, stderr: "Unable to proceed: global unit g.service runs on 2 machines; choose one with --machine\n"},
		},
		{
			name: "ambiguous argument",
			args: func(w *sshWorld) []string { return []string{"ssh", "aaaa", "true"} },
			want: want{code: ExitError, stderr: "Unable to proceed: ambiguous argument, both machine and unit found for `aaaa`.\n" +
				"Please use flag `--machine` or `--unit` to refine the search\n"},
		},
		{
			name: "several machines match",
			args: func(w *sshWorld) []string { return []string{"ssh", "--machine=aaa", "true"} },
			want: want{code: ExitError, stderr: "Unable to proceed: found more than one machine\n"},
		},
		{
			name: "several machines match the argument",
			args: func(w *sshWorld) []string { return []string{"ssh", "aaa", "true"} },
			want: want{code: ExitError, stderr: "Unable to proceed: found more than one machine\n"},
		},
		{
			name: "nothing matches",
			args: func(w *sshWorld) []string { return []string{"ssh", "zzz", "true"} },
			want: want{code: ExitError, stderr: "Unable to proceed: could not find matching unit or machine\n"},
		},
		{
			name: "no machine matches the flag",
			args: func(w *sshWorld) []string { return []string{"ssh", "--machine=zzz"} },
			want: want{code: ExitError, stderr: "Unable to proceed: could not find matching machine\n"},
		},
		{
			name: "unit that does not run",
			args: func(w *sshWorld) []string { return []string{"ssh", "--unit=idle"} },
			want: want{code: ExitError, stderr: "Unable to proceed: Unit idle.service does not appear to be running.\n"},
		},
		{
			name: "unit that does not exist",
			args: func(w *sshWorld) []string { return []string{"ssh", "--unit=nope"} },
			want: want{code: ExitError, stderr: "Unable to proceed: Unit nope.service does not exist.\n"},
		},
		{
			name: "both flags",
			args: func(w *sshWorld) []string { return []string{"ssh", "--machine=aaaa1", "--unit=hello"} },
			want: want{code: ExitError, stderr: "Both machine and unit flags provided, please specify only one.\n"},
		},
		{
			name: "no target",
			args: func(w *sshWorld) []string { return []string{"ssh"} },
			want: want{code: ExitError, stderr: "Unable to proceed: one machine or unit must be provided\n"},
		},
		{
			name: "no agent", env: map[string]string{"SSH_AUTH_SOCK": ""},
			args: func(w *sshWorld) []string { return []string{"ssh", port(w), "--machine=aaaa1", "true"} },
			want: want{code: ExitError, stderr: "Failed building SSH client: SSH_AUTH_SOCK environment variable is not set. " +
				"Verify ssh-agent is running. See the fleetctl documentation for help.\n"},
		},
		{
			name: "through the tunnel", setup: func(t *testing.T, w *sshWorld) { w.trust(t, w.m2, w.bastion) },
			args: func(w *sshWorld) []string {
				return []string{"--tunnel=" + w.bastion.addr, "ssh", port(w), "--machine=aaab", "echo", "via", "bastion"}
			},
			want: want{stdout: "via bastion\n"},
			check: func(t *testing.T, w *sshWorld) {
				// The API is reached through the tunnel too.
				api := strings.TrimPrefix(w.c.endpoint, "http://")
				if _, _, _, _, tcpip, _ := w.bastion.seen(); strings.Join(tcpip, " ") != api+" "+w.m2.addr {
					t.Errorf("bastion forwarded to %q, want [%s %s]", tcpip, api, w.m2.addr)
				}
				if _, execs, _, _, _, _ := w.m2.seen(); len(execs) != 1 {
					t.Errorf("commands on the machine: %q", execs)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newSSHWorld(t, e)
			if tc.setup != nil {
				tc.setup(t, w)
			}
			res := w.fleetctl(t, tc.stdin, tc.env, tc.args(w)...)
			stderr := strings.NewReplacer(
				strconv.Itoa(w.m1.port()), "PORT",
				w.home, "HOME",
				ssh.FingerprintSHA256(w.m1.key.PublicKey()), "FP1",
			).Replace(res.stderr)
			if res.code != tc.want.code || res.stdout != tc.want.stdout || stderr != tc.want.stderr {
				t.Errorf("got exit %d\nstdout %q\nstderr %q\nwant exit %d\nstdout %q\nstderr %q",
					res.code, res.stdout, stderr, tc.want.code, tc.want.stdout, tc.want.stderr)
			}
			if tc.check != nil {
				tc.check(t, w)
			}
		})
	}
}

// TestAPITunnel reaches the API through an SSH bastion: over a
// direct-tcpip channel for a TCP endpoint, and through "fleetctl
// fd-forward" on the bastion for a unix socket endpoint.
func TestAPITunnel(t *testing.T) {
	e := registrytest.StartEtcd(t)
	w := newSSHWorld(t, e)
	w.trust(t, w.bastion)
	sockDir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "fleet.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: w.c.handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	certPEM, keyPEM := nameCertificate(t, testTLSName)
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv := httptest.NewUnstartedServer(w.c.handler)
	tlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	caPEM := certPEM
	_, tlsPort, _ := net.SplitHostPort(strings.TrimPrefix(tlsSrv.URL, "https://"))

	const want = "MACHINE\t\tIP\t\tMETADATA\naaaa1111...\t127.0.0.1\t-\naaab2222...\t127.0.0.2\t-\n"
	tests := []struct {
		name      string
		endpoint  string
		args      []string
		wantExecs []string
		wantTCP   []string
		wantHost  string // Host header the client sends
	}{
		{name: "tcp endpoint", endpoint: w.c.endpoint, wantTCP: []string{strings.TrimPrefix(w.c.endpoint, "http://")},
			wantHost: strings.TrimPrefix(w.c.endpoint, "http://")},
		{name: "unix endpoint", endpoint: "unix://" + sock, wantExecs: []string{"fleetctl fd-forward " + sock}},
		// The certificate names example.com, which only the bastion
		// resolves: the local end of the tunnel is a loopback address.
		{name: "https endpoint verified by its name", endpoint: "https://" + testTLSName + ":" + tlsPort,
			args: []string{"--ca-file=/ca.pem"}, wantTCP: []string{testTLSName + ":" + tlsPort},
			wantHost: testTLSName + ":" + tlsPort},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tunnelDirs(t)
			env := map[string]string{"FLEETCTL_TUNNEL": w.bastion.addr, "FLEETCTL_ENDPOINT": tc.endpoint,
				"SSH_AUTH_SOCK": w.agentSock, "HOME": w.home}
			res := runFleetctl(t, w.c, run{env: env, files: map[string]string{"/ca.pem": caPEM},
				args: append(tc.args, "list-machines")})
			if res.code != ExitOK || res.stdout != want || res.stderr != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
			}
			if res.endpoint == tc.endpoint {
				t.Errorf("the client was given the remote endpoint %q, not the tunnel's", res.endpoint)
			}
			if res.opts.Host != tc.wantHost {
				t.Errorf("Host header %q, want the remote API's %q", res.opts.Host, tc.wantHost)
			}
			_, execs, _, _, tcpip, _ := w.bastion.seen()
			if tc.wantExecs != nil && !equalTail(execs, tc.wantExecs) || tc.wantTCP != nil && !equalTail(tcpip, tc.wantTCP) {
				t.Errorf("bastion ran %q and forwarded to %q; want %q and %q at the end", execs, tcpip, tc.wantExecs, tc.wantTCP)
			}
			if after := tunnelDirs(t); len(after) != len(before) {
				t.Errorf("tunnel socket directories left behind: %q (before: %q)", after, before)
			}
		})
	}
}

// nameCertificate returns a self-signed certificate valid for name only
// (no IP address), and its key, in PEM.
func nameCertificate(t *testing.T, name string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

// equalTail reports whether got ends with want.
func equalTail(got, want []string) bool {
	if len(got) < len(want) {
		return false
	}
	return strings.Join(got[len(got)-len(want):], "\n") == strings.Join(want, "\n")
}

// tunnelDirs lists the tunnel socket directories in the temp dir.
func tunnelDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), "fleetctl-tunnel-*"))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestFDForward copies stdin to a unix socket and the socket's answer to
// stdout.
func TestFDForward(t *testing.T) {
	dir, err := os.MkdirTemp("", "fdf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "echo.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		b, err := io.ReadAll(conn) // until fd-forward closes its side
		if err == nil {
			_, err = fmt.Fprintf(conn, "got %d bytes: %s", len(b), strings.ToUpper(string(b)))
		}
		served <- err
	}()
	res := runFleetctl(t, nil, run{stdin: "ping\n", args: []string{"fd-forward", sock}})
	if err := <-served; err != nil {
		t.Fatalf("socket side: %v", err)
	}
	if res.code != ExitOK || res.stdout != "got 5 bytes: PING\n" || res.stderr != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}
