package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSignalsEndFleetctl runs the fleetctl binary against an API that
// accepts connections and never answers, and checks that SIGINT and
// SIGTERM end it with an error, although its request timeout is an hour.
func TestSignalsEndFleetctl(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fleetctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build fleetctl: %v\n%s", err, out)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			sock := filepath.Join(dir, "api.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				if c, err := ln.Accept(); err == nil {
					accepted <- c // held open, never answered
				}
			}()
			cmd := exec.Command(bin, "--endpoint=unix://"+sock, "--request-timeout=1h", "list-units")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.Env = append(os.Environ(), "FLEETCTL_TUNNEL=")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			conn := <-accepted
			defer conn.Close()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err = cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("fleetctl after %v: %v, want exit status 1 (stderr %q)", sig, err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "signal received") {
				t.Errorf("stderr %q, want the request ended by the signal", stderr.String())
			}
			_ = os.Remove(sock)
		})
	}
}
