package fleetd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet-next/fleet/access"
	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/api/localunits"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/unit"
)

// fakeSystemd reports every unit active.
type fakeSystemd struct{}

func (fakeSystemd) UnitStatus(_ context.Context, name string) (systemd.UnitStatus, error) {
	return systemd.UnitStatus{SystemdState: unit.SystemdState{LoadState: "loaded", ActiveState: "active",
		SubState: "running", MainPID: 42}, Text: "● " + name}, nil
}

// fakeJournal stands for journalctl: numbered lines, and with Follow a
// line every 10ms until its reader is closed or ctx ends, which it then
// reports on ended. unavailable makes it a machine without journald.
type fakeJournal struct {
	unavailable bool
	ended       chan struct{}
	once        sync.Once
}

func (j *fakeJournal) Read(ctx context.Context, name string, opts systemd.JournalOptions) (io.ReadCloser, error) {
	if j.unavailable {
		return nil, &systemd.JournalUnavailableError{Reason: "journald is not running (no /run/systemd/journal/socket)"}
	}
	pr, pw := io.Pipe()
	go func() {
		defer j.once.Do(func() { close(j.ended) })
		for i := 1; i <= opts.Lines || opts.Follow; i++ {
			if ctx.Err() != nil {
				_ = pw.CloseWithError(ctx.Err())
				return
			}
			if _, err := fmt.Fprintf(pw, "%s line %d\n", name, i); err != nil {
				return
			}
			if i >= opts.Lines {
				time.Sleep(10 * time.Millisecond)
			}
		}
		_ = pw.Close()
	}()
	return pr, nil
}

// relayPair is machine m1, asked by the test, relaying through the store to
// machine m2, which owns hello.service and reads its journal with j. The
// subject m2 serves a request as is sent on subjects.
type relayPair struct {
	srv        *httptest.Server
	subjects   chan string
	stopTarget func() // stops m2's bridge, as fleetd's shutdown does
}

func newRelayPair(t *testing.T, j *fakeJournal) *relayPair {
	t.Helper()
	e := registrytest.StartEtcd(t)
	reg1, reg2 := e.Registry(t), e.Registry(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, id := range []string{"m1", "m2"} {
		if _, err := reg1.Register(ctx, unit.Machine{ID: id}, "instance-"+id, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	content := "[Service]\nExecStart=/bin/sleep 1\n"
	if err := reg1.CreateUnit(ctx, unit.Unit{Name: "hello.service", Content: content, Hash: unit.HashOf(content),
		Desired: unit.StateLaunched}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	p := &relayPair{subjects: make(chan string, 10)}
	h2 := api.NewHandler(reg2, api.Options{MachineID: "m2",
		Local: &localunits.LocalUnits{MachineID: "m2", Systemd: fakeSystemd{}, Logs: j}})
	seen := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := access.IdentityFrom(r.Context())
		s := id.Name()
		if from, ok := api.ForwardedFrom(r.Context()); !ok || from != "m1" || id.Via != "m1" {
			s = "(not forwarded by m1)"
		}
		p.subjects <- s
		h2.ServeHTTP(w, r)
	})
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = reg2.ServeRelay(sctx, "m2", serveRelayed(seen, log)) }()
	p.stopTarget = func() { stop(); <-done }
	t.Cleanup(p.stopTarget)

	h1 := api.NewHandler(reg1, api.Options{MachineID: "m1", Relay: storeRelay{reg: reg1, machineID: "m1"}})
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h1.ServeHTTP(w, r.WithContext(access.WithIdentity(r.Context(), access.Identity{Subjects: []string{"user:alice"}})))
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// subject returns the subject m2 served the last request as.
func (p *relayPair) subject(t *testing.T) string {
	t.Helper()
	select {
	case s := <-p.subjects:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("no request reached m2 in 30s")
		return ""
	}
}

func (p *relayPair) get(t *testing.T, path string) *http.Response {
	t.Helper()
	resp, err := p.srv.Client().Get(p.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func TestRelayedStatusAndJournal(t *testing.T) {
	j := &fakeJournal{ended: make(chan struct{})}
	p := newRelayPair(t, j)

	t.Run("status", func(t *testing.T) {
		resp := p.get(t, "/fleet/v1/units/hello.service/status?machineID=m2")
		var rep api.UnitStatusReport
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("status: %d, %v", resp.StatusCode, err)
		}
		if rep.MachineID != "m2" || rep.SystemdActiveState != "active" || rep.MainPID != 42 {
			t.Errorf("report = %+v, want m2's: active, main PID 42", rep)
		}
		if s := p.subject(t); s != "user:alice" {
			t.Errorf("m2 served the request as %q, want the caller's user:alice", s)
		}
	})

	t.Run("journal", func(t *testing.T) {
		resp := p.get(t, "/fleet/v1/units/hello.service/journal?machineID=m2&lines=3")
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("journal: %d, %v", resp.StatusCode, err)
		}
		want := "hello.service line 1\nhello.service line 2\nhello.service line 3\n"
		if string(b) != want || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("journal = %q (%s), want %q as text/plain", b, resp.Header.Get("Content-Type"), want)
		}
		p.subject(t)
	})

	t.Run("follow", func(t *testing.T) {
		resp := p.get(t, "/fleet/v1/units/hello.service/journal?machineID=m2&lines=2&follow=true")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("follow: %d", resp.StatusCode)
		}
		p.subject(t)
		sc := bufio.NewScanner(resp.Body)
		for i := 1; i <= 20; i++ { // past the lines asked for: new lines as they come
			if !sc.Scan() {
				t.Fatalf("stream ended after %d lines: %v", i-1, sc.Err())
			}
			if want := fmt.Sprintf("hello.service line %d", i); sc.Text() != want {
				t.Fatalf("line %d = %q, want %q", i, sc.Text(), want)
			}
		}
		_ = resp.Body.Close()
		select {
		case <-j.ended: // the client's going reached the reader on m2
		case <-time.After(30 * time.Second):
			t.Fatal("m2 still reads the journal 30s after the client went away")
		}
	})
}

// A followed journal ends cleanly for the client when the target's fleetd
// stops, rather than leaving it waiting.
func TestRelayedFollowEndsWhenTheTargetStops(t *testing.T) {
	p := newRelayPair(t, &fakeJournal{ended: make(chan struct{})})
	resp := p.get(t, "/fleet/v1/units/hello.service/journal?machineID=m2&lines=1&follow=true")
	p.subject(t)
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || sc.Text() != "hello.service line 1" {
		t.Fatalf("first line = %q, %v", sc.Text(), sc.Err())
	}
	p.stopTarget()
	for sc.Scan() {
	}
	if err := sc.Err(); err != nil {
		t.Errorf("stream ended with %v, want a clean end", err)
	}
}

// A machine without journald answers a relayed journal request with the
// same 503 and message as one asked directly.
func TestRelayedJournalUnavailable(t *testing.T) {
	p := newRelayPair(t, &fakeJournal{unavailable: true})
	resp := p.get(t, "/fleet/v1/units/hello.service/journal?machineID=m2")
	p.subject(t)
	var body struct {
		Error api.Error `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	want := "journal unavailable on machine m2: journald is not running (no /run/systemd/journal/socket)"
	if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Message != want {
		t.Errorf("answer %d %q, want 503 %q", resp.StatusCode, body.Error.Message, want)
	}
}

// A request for a machine whose fleetd does not answer is a 504 saying so.
func TestRelayToADeadMachine(t *testing.T) {
	e := registrytest.StartEtcd(t)
	reg := e.Registry(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := reg.Register(ctx, unit.Machine{ID: "m9"}, "instance-m9", time.Minute); err != nil {
		t.Fatal(err)
	}
	content := "[Service]\nExecStart=/bin/sleep 1\n"
	if err := reg.CreateUnit(ctx, unit.Unit{Name: "hello.service", Content: content, Hash: unit.HashOf(content),
		Desired: unit.StateLaunched}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewHandler(reg, api.Options{MachineID: "m1", Relay: storeRelay{reg: reg, machineID: "m1"}}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/fleet/v1/units/hello.service/status?machineID=m9")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(b), "machine m9 did not answer") {
		t.Errorf("answer %d %s, want 504 saying machine m9 did not answer", resp.StatusCode, b)
	}
}

var _ registry.RelayHandler = serveRelayed(http.NotFoundHandler(), nil)
