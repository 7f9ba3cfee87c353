package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleet-next/fleet/test/cluster"
	"github.com/fleet-next/fleet/unit"
)

// Template is the template unit of the workload; churn runs instances of it.
const (
	Template        = "tmpl@.service"
	instancePattern = "tmpl@%d.service"
)

// opTimeout bounds one fleetctl run; opDeadline bounds the retries of one
// operation through whichever hosts are healthy.
const (
	opTimeout  = 30 * time.Second
	opDeadline = 60 * time.Second
)

// spec is one unit of the workload.
type spec struct {
	name      string
	content   string
	global    bool
	conflicts bool   // has Conflicts=conf-*.service
	machineOf string // MachineOf=, if any
	metadata  string // MachineMetadata=, if any ("role=edge")
}

// unitFile is a unit running sleep, with the given [X-Fleet] options.
func unitFile(desc string, xfleet ...string) string {
	s := "[Unit]\nDescription=" + desc + "\n\n[Service]\nExecStart=/bin/sleep infinity\n"
	if len(xfleet) > 0 {
		s += "\n[X-Fleet]\n" + strings.Join(xfleet, "\n") + "\n"
	}
	return s
}

// badFile is a unit systemd refuses to start: Type=simple without
// ExecStart= (LoadState bad-setting).
func badFile(desc string) string {
	return "[Unit]\nDescription=" + desc + "\n\n[Service]\nType=simple\n"
}

// initialUnits are the units started before the first fault: every kind
// of unit fleet schedules.
func initialUnits() []spec {
	var s []spec
	for i := range 4 {
		n := fmt.Sprintf("plain-%d.service", i)
		s = append(s, spec{name: n, content: unitFile("chaos " + n)})
	}
	for i := range 3 {
		n := fmt.Sprintf("conf-%d.service", i)
		s = append(s, spec{name: n, content: unitFile("chaos "+n, "Conflicts=conf-*.service"), conflicts: true})
	}
	s = append(s,
		spec{name: "follow-0.service", content: unitFile("chaos follow-0", "MachineOf=plain-0.service"),
			machineOf: "plain-0.service"},
		spec{name: "follow-1.service", content: unitFile("chaos follow-1", "MachineOf=conf-0.service"),
			machineOf: "conf-0.service"},
		spec{name: "global-all.service", content: unitFile("chaos global-all", "Global=true"), global: true},
		spec{name: "global-edge.service", content: unitFile("chaos global-edge", "Global=true",
			"MachineMetadata=role=edge"), global: true, metadata: "role=edge"},
	)
	return s
}

// initialInstances are the template instances started before the first
// fault.
func initialInstances() []string {
	var s []string
	for i := range 4 {
		s = append(s, fmt.Sprintf(instancePattern, i))
	}
	return s
}

// templateContent is the template's file; its instances store the same.
var templateContent = "[Unit]\nDescription=chaos instance %i\n\n[Service]\nExecStart=/bin/sleep infinity\n"

// tracked is what the run expects the registry to hold for one unit.
type tracked struct {
	spec
	hash    unit.Hash
	desired unit.FleetState
	bad     bool // holds the bad setting
	// destroyed is set once a destroy succeeded, and cleared by a start.
	destroyed   bool
	destroyedAt time.Time
	// busy counts operations in progress on the unit; gen changes with
	// every operation's start and end, so that a check that read the
	// registry across one can tell.
	busy int
	gen  int
	// uncertain is set when an operation failed: what the registry holds
	// is unknown until the next operation succeeds.
	uncertain bool
	touches   []span // when operations acted on the unit
}

type span struct{ from, to time.Time }

// workload drives units through fleetctl and remembers what it asked for.
type workload struct {
	dir  string               // unit files, one directory per version
	pick func() *cluster.Host // a healthy host to run fleetctl against, or nil
	rec  *recorder

	mu    sync.Mutex // guards units, files, ops and failed
	units map[string]*tracked
	files int
	ops   int // fleetctl operations run to success or to their deadline
	// failed lists operations that did not succeed within opDeadline.
	failed []string
}

func newWorkload(dir string, rec *recorder, pick func() *cluster.Host) *workload {
	return &workload{dir: dir, rec: rec, pick: pick, units: map[string]*tracked{}}
}

// write stores content as a unit file named name in a fresh directory and
// returns its path.
func (w *workload) write(name, content string) (string, error) {
	w.mu.Lock()
	w.files++
	d := filepath.Join(w.dir, fmt.Sprintf("v%d", w.files))
	w.mu.Unlock()
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("write unit file: %w", err)
	}
	p := filepath.Join(d, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		return "", fmt.Errorf("write unit file: %w", err)
	}
	return p, nil
}

// begin marks names as being operated on.
func (w *workload) begin(names ...string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range names {
		t := w.units[n]
		if t == nil {
			t = &tracked{spec: spec{name: n}}
			w.units[n] = t
		}
		t.busy++
		t.gen++
	}
	return time.Now()
}

// finish ends an operation on names: apply runs on each unit if it
// succeeded; a failed one leaves the units uncertain.
func (w *workload) finish(from time.Time, err error, apply func(*tracked), names ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for _, n := range names {
		t := w.units[n]
		t.busy--
		t.gen++
		t.touches = append(t.touches, span{from, now})
		if err != nil {
			t.uncertain = true
			continue
		}
		t.uncertain = false
		apply(t)
	}
}

// fleetctl runs one command through healthy hosts until it succeeds or
// opDeadline passes.
func (w *workload) fleetctl(ctx context.Context, args ...string) error {
	deadline := time.Now().Add(opDeadline)
	var last string
	for {
		if h := w.pick(); h != nil {
			cctx, cancel := context.WithTimeout(ctx, opTimeout)
			res, err := h.FleetctlCtx(cctx, args...)
			cancel()
			switch {
			case err == nil && res.Exit == 0:
				w.mu.Lock()
				w.ops++
				w.mu.Unlock()
				return nil
			case err != nil:
				last = fmt.Sprintf("host %d: %v", h.Index, err)
			default:
				last = fmt.Sprintf("host %d: exit %d: %s%s", h.Index, res.Exit, res.Stdout, res.Stderr)
			}
		} else {
			last = "no healthy host to run it on"
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			msg := fmt.Sprintf("fleetctl %s: not done within %s; last: %s", strings.Join(args, " "), opDeadline,
				strings.TrimSpace(last))
			w.mu.Lock()
			w.ops++
			w.failed = append(w.failed, w.rec.rel(time.Now())+" "+msg)
			w.mu.Unlock()
			return errors.New(msg)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// start starts units from their specs (submitting them), or replaces
// them with replace.
func (w *workload) start(ctx context.Context, replace bool, specs ...spec) error {
	args := []string{"start", "--no-block"}
	if replace {
		args = append(args, "--replace")
	}
	var names []string
	for _, s := range specs {
		p, err := w.write(s.name, s.content)
		if err != nil {
			return err
		}
		args = append(args, p)
		names = append(names, s.name)
	}
	from := w.begin(names...)
	err := w.fleetctl(ctx, args...)
	bySpec := map[string]spec{}
	for _, s := range specs {
		bySpec[s.name] = s
	}
	w.finish(from, err, func(t *tracked) {
		s := bySpec[t.name]
		t.spec = s
		t.hash = hashOf(s.content)
		t.desired = unit.StateLaunched
		t.bad = !strings.Contains(s.content, "ExecStart=")
		t.destroyed = false
	}, names...)
	return err
}

// submitTemplate submits the template (desired state inactive).
func (w *workload) submitTemplate(ctx context.Context) error {
	p, err := w.write(Template, templateContent)
	if err != nil {
		return err
	}
	from := w.begin(Template)
	err = w.fleetctl(ctx, "submit", p)
	w.finish(from, err, func(t *tracked) {
		t.spec = spec{name: Template, content: templateContent}
		t.hash = hashOf(templateContent)
		t.desired = unit.StateInactive
	}, Template)
	return err
}

// startInstances starts instances of the template from its file.
func (w *workload) startInstances(ctx context.Context, names ...string) error {
	p, err := w.write(Template, templateContent)
	if err != nil {
		return err
	}
	args := []string{"start", "--no-block"}
	for _, n := range names {
		args = append(args, filepath.Join(filepath.Dir(p), n))
	}
	from := w.begin(names...)
	err = w.fleetctl(ctx, args...)
	w.finish(from, err, func(t *tracked) {
		t.spec = spec{name: t.name, content: templateContent}
		t.hash = hashOf(templateContent)
		t.desired = unit.StateLaunched
		t.destroyed = false
	}, names...)
	return err
}

// destroy destroys units.
func (w *workload) destroy(ctx context.Context, names ...string) error {
	from := w.begin(names...)
	err := w.fleetctl(ctx, append([]string{"destroy", "--no-block"}, names...)...)
	w.finish(from, err, func(t *tracked) {
		t.destroyed, t.destroyedAt = true, time.Now()
	}, names...)
	return err
}

// badPair is a bad unit and a good unit bound to its machine. The good
// one's name sorts after the bad one's, so that an agent applying its plan
// in name order meets the bad unit first.
func badPair(name string) (bad, pal spec) {
	stem := strings.TrimSuffix(name, ".service")
	bad = spec{name: name, content: badFile("chaos " + stem)}
	pal = spec{name: "pal-of-" + name, content: unitFile("chaos pal of "+stem, "MachineOf="+name),
		machineOf: name}
	return bad, pal
}

// fixedBad is the bad unit with its setting fixed.
func fixedBad(name string) spec {
	return spec{name: name, content: unitFile("chaos " + strings.TrimSuffix(name, ".service") + " fixed")}
}

// snapshot is what the registry should hold, as of one moment.
type snapshot struct {
	units map[string]tracked // copies
}

func (w *workload) snapshot() snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := snapshot{units: make(map[string]tracked, len(w.units))}
	for n, t := range w.units {
		c := *t
		c.touches = slices.Clone(t.touches)
		s.units[n] = c
	}
	return s
}

// names lists every unit ever started, except templates: what the checks
// ask each systemd about.
func (s snapshot) names() []string {
	var ns []string
	for n := range s.units {
		if !unit.ParseName(n).IsTemplate() {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns
}

// touched reports whether an operation on the unit overlapped [from, to]
// (each extended by grace after it ended) or is in progress.
func (t tracked) touched(from, to time.Time, grace time.Duration) bool {
	if t.busy > 0 {
		return true
	}
	for _, s := range t.touches {
		if !s.from.After(to) && !s.to.Add(grace).Before(from) {
			return true
		}
	}
	return false
}

// shouldRun reports whether the unit must be active once the cluster is
// quiet: launched, good, and with a known state.
func (t tracked) shouldRun() bool {
	return t.desired == unit.StateLaunched && !t.destroyed && !t.bad && !t.uncertain && t.busy == 0
}

// failures returns the operations that failed and how many ran.
func (w *workload) failures() ([]string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.failed), w.ops
}

// hashOf is the hash the cluster stores for a unit file.
func hashOf(content string) unit.Hash {
	f, err := unit.Parse(content)
	if err != nil {
		panic(fmt.Sprintf("workload unit does not parse: %v", err))
	}
	return f.Hash()
}
