package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// harness implements cluster.T for the suite: Fatal ends the scenario
// (run returns the error) and Cleanup functions run, last first, when the
// scenario is over.
type harness struct {
	log *slog.Logger

	mu       sync.Mutex // guards cleanups and failed
	cleanups []func()
	failed   bool
}

// fatalError carries a Fatal message out of the scenario.
type fatalError struct{ msg string }

func (e fatalError) Error() string { return e.msg }

// run calls f and turns a Fatal inside it into an error. It always runs
// the cleanups.
func (h *harness) run(f func() error) (err error) {
	defer h.cleanup()
	defer func() {
		if v := recover(); v != nil {
			fe, ok := v.(fatalError)
			if !ok {
				panic(v)
			}
			err = fe
		}
	}()
	return f()
}

func (h *harness) cleanup() {
	h.mu.Lock()
	cs := h.cleanups
	h.cleanups = nil
	h.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

func (h *harness) Helper() {}

func (h *harness) Logf(format string, args ...any) { h.log.Debug(fmt.Sprintf(format, args...)) }

func (h *harness) Errorf(format string, args ...any) {
	h.setFailed()
	h.log.Warn(fmt.Sprintf(format, args...))
}

func (h *harness) Fatal(args ...any) {
	h.setFailed()
	panic(fatalError{fmt.Sprint(args...)})
}

func (h *harness) Fatalf(format string, args ...any) {
	h.setFailed()
	panic(fatalError{fmt.Sprintf(format, args...)})
}

func (h *harness) setFailed() {
	h.mu.Lock()
	h.failed = true
	h.mu.Unlock()
}

func (h *harness) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

func (h *harness) Cleanup(f func()) {
	h.mu.Lock()
	h.cleanups = append(h.cleanups, f)
	h.mu.Unlock()
}

func (h *harness) TempDir() string {
	dir, err := os.MkdirTemp("", "fleet-bench-")
	if err != nil {
		h.Fatal(err)
	}
	h.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			h.log.Warn("removing temp dir", "dir", dir, "err", err)
		}
	})
	return dir
}
