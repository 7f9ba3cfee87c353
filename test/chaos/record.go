package chaos

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// FleetdExit is not planned: it is a fleetd that ended on its own, which
// the run restarts as systemd's Restart= would.
const FleetdExit Kind = "fleetd-exit"

// cutsOff reports whether a fault of kind k leaves a host's units running
// while the rest of the cluster cannot hear from it, so that the engine may
// start them elsewhere: the documented partition window, which a dead
// fleetd opens too.
func (k Kind) cutsOff() bool {
	switch k {
	case FleetdKill, LeaderKill, Partition, FleetdExit:
		return true
	}
	return false
}

// window is one fault as it happened: its span and what it acted on.
type window struct {
	kind       Kind
	host       int // -1: not bound to a host
	what       string
	start, end time.Time // end is zero while the fault lasts
}

func (w *window) String() string {
	return w.what
}

// recorder keeps every fault that happened, for the invariant checks and
// the report.
type recorder struct {
	t0 time.Time

	mu       sync.Mutex // guards the fields below
	windows  []*window
	injected map[Kind]int
	skipped  map[Kind]int
	problems []string // faults the harness failed to inject or undo
}

func newRecorder(t0 time.Time) *recorder {
	return &recorder{t0: t0, injected: map[Kind]int{}, skipped: map[Kind]int{}}
}

// rel formats t as an offset from the start of the run.
func (r *recorder) rel(t time.Time) string {
	return "+" + t.Sub(r.t0).Round(10*time.Millisecond).String()
}

// begin records that a fault starts now.
func (r *recorder) begin(kind Kind, host int, what string) *window {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := &window{kind: kind, host: host, what: what, start: time.Now()}
	r.windows = append(r.windows, w)
	r.injected[kind]++
	return w
}

// end records that a fault is over.
func (r *recorder) end(w *window) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.end = time.Now()
}

func (r *recorder) skip(kind Kind) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skipped[kind]++
}

// problem records a fault the harness could not inject or undo.
func (r *recorder) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, r.rel(time.Now())+" "+fmt.Sprintf(format, args...))
}

// hostFaults returns the kinds of faults on host that overlap [from, to],
// each extended by grace after its end, keeping those keep accepts.
func (r *recorder) hostFaults(host int, from, to time.Time, grace time.Duration, keep func(Kind) bool) []Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var kinds []Kind
	for _, w := range r.windows {
		if w.host != host || !keep(w.kind) {
			continue
		}
		if w.start.After(to) || (!w.end.IsZero() && w.end.Add(grace).Before(from)) {
			continue
		}
		if !slices.Contains(kinds, w.kind) {
			kinds = append(kinds, w.kind)
		}
	}
	return kinds
}

// cutSpan merges the faults cutting host off that overlap [from, to]
// extended by grace: from the earliest start to the latest end (zero end:
// one is still going on). ok is false when there are none.
func (r *recorder) cutSpan(host int, from, to time.Time, grace time.Duration) (start, end time.Time, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	open := false
	for _, w := range r.windows {
		if w.host != host || !w.kind.cutsOff() || w.start.After(to) || (!w.end.IsZero() && w.end.Add(grace).Before(from)) {
			continue
		}
		if !ok || w.start.Before(start) {
			start = w.start
		}
		ok = true
		if w.end.IsZero() {
			open = true
		} else if w.end.After(end) {
			end = w.end
		}
	}
	if open {
		end = time.Time{}
	}
	return start, end, ok
}

// around describes the faults that overlap [from-span, to] on the given
// hosts or on no host in particular, for violation reports.
func (r *recorder) around(hosts []int, from, to time.Time, span time.Duration) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var parts []string
	for _, w := range r.windows {
		if w.host >= 0 && !slices.Contains(hosts, w.host) {
			continue
		}
		if w.start.After(to) || (!w.end.IsZero() && w.end.Before(from.Add(-span))) {
			continue
		}
		end := "ongoing"
		if !w.end.IsZero() {
			end = r.rel(w.end)
		}
		parts = append(parts, fmt.Sprintf("%s %s..%s", w.what, r.rel(w.start), end))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// lastEnd is when the last fault ended.
func (r *recorder) lastEnd() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	for _, w := range r.windows {
		if w.end.After(last) {
			last = w.end
		}
	}
	return last
}
