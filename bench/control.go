package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleet-next/fleet/internal/pause"
	"github.com/fleet-next/fleet/registry"
)

// controlConfig configures the control-plane benchmark: simulated agents
// with in-memory systemd, one engine and one etcd, each in its own process.
type controlConfig struct {
	Agents     int           // simulated hosts
	Units      int           // units submitted in the burst, and again in the backlog
	Submitters int           // goroutines submitting units
	Idle       time.Duration // length of each idle window
	TTL        time.Duration // agent_ttl
	PerConn    int           // agents sharing one etcd connection
	// ProfileDir, if set, receives CPU profiles of the engine and agents
	// processes.
	ProfileDir string
}

// profileArgs are the arguments that make a child write a CPU profile.
func (c controlConfig) profileArgs(role string) []string {
	if c.ProfileDir == "" {
		return nil
	}
	return []string{"-cpuprofile", filepath.Join(c.ProfileDir, fmt.Sprintf("%s-%d.pprof", role, c.Agents))}
}

// window is what happened between two snapshots.
type window struct {
	Wall      time.Duration
	Etcd      requests // every request etcd's gRPC server received
	Engine    requests // requests the engine's client sent
	Driver    requests // requests the benchmark driver's client sent
	AgentsOwn requests // requests the agents' clients sent, by their own count
	EngineUse usage    // engine process
	AgentsUse usage    // agents process
	EtcdUse   usage    // etcd process
}

// Agents is the agents' share of etcd's own count: everything etcd
// received minus what the engine and the driver sent.
func (w window) Agents() requests { return w.Etcd.Sub(w.Engine).Sub(w.Driver) }

// PerAgentPerSecond is the agents' share per agent and second.
func (w window) PerAgentPerSecond(agents int) float64 {
	if agents == 0 || w.Wall <= 0 {
		return 0
	}
	return w.Agents().Total() / float64(agents) / w.Wall.Seconds()
}

// burstResult is the submit-and-start burst.
type burstResult struct {
	Window     window
	Submit     time.Duration // submitting every unit
	Placements int
	// PlaceRate is placements per second from the first unit accepted to
	// the last placement written: during a burst it is bounded by the
	// submission rate.
	PlaceRate float64
	Latency   latencies // unit accepted -> agent published it launched and active
}

// singleResult is one unit started on a busy, idle cluster.
type singleResult struct {
	AgentsWoken   int   // agents that received a schedule
	EngineWakeups int64 // change notifications of the engine's view
	Requests      requests
	Latency       time.Duration
}

// backlogResult is a new engine leader placing units submitted while no
// engine led, with the agents paused, then the agents starting them.
type backlogResult struct {
	Window      window
	Units       int
	Placements  int
	Read        time.Duration // won election -> the engine's view had read the cluster
	Plan        time.Duration // view read -> first write: planning
	PlaceTime   time.Duration // won election -> last placement written
	PlaceRate   float64       // placements per second over PlaceTime
	WriteRate   float64       // placements per second from the first write to the last
	AllLaunched time.Duration // agents resumed -> last unit published launched
}

// controlResult is one run of the control-plane benchmark.
type controlResult struct {
	Config     controlConfig
	Register   time.Duration // registering every machine
	Idle       window        // no units
	Burst      burstResult
	Single     singleResult
	IdleLoaded window // every unit running
	Backlog    backlogResult
	// Registrations counts machine registrations; more than Agents means
	// leases were lost under load.
	Registrations int64
	PublishErrors int64
}

// controlRun holds the processes of one run.
type controlRun struct {
	cfg      controlConfig
	log      *slog.Logger
	hc       *http.Client
	endpoint string
	etcd     *child
	engine   *child // nil while no engine runs
	agents   *child
	driver   *requestCounter
	cli      *clientv3.Client
	reg      *registry.Etcd
}

// snapshot is the state of every counter at one moment.
type snapshot struct {
	at                      time.Time
	etcd, engine, driver    requests
	agents                  agentsCount
	engineRep               engineReport
	engineP, agentsP, etcdP procSample
}

func (r *controlRun) snap(ctx context.Context) (snapshot, error) {
	s := snapshot{at: time.Now()}
	var err error
	if s.etcd, err = scrapeRequests(ctx, r.hc, r.endpoint); err != nil {
		return s, err
	}
	if r.engine != nil {
		if err := r.engine.call(ctx, "report", &s.engineRep); err != nil {
			return s, err
		}
		s.engine = s.engineRep.Requests
		if s.engineP, err = sampleProc(r.engine.PID()); err != nil {
			return s, err
		}
	} else {
		s.engineP = procSample{At: s.at}
	}
	if err := r.agents.call(ctx, "count", &s.agents); err != nil {
		return s, err
	}
	s.driver = r.driver.Snapshot()
	if s.agentsP, err = sampleProc(r.agents.PID()); err != nil {
		return s, err
	}
	if s.etcdP, err = sampleProc(r.etcd.PID()); err != nil {
		return s, err
	}
	return s, nil
}

func between(a, b snapshot) window {
	return window{
		Wall:      b.at.Sub(a.at),
		Etcd:      b.etcd.Sub(a.etcd),
		Engine:    b.engine.Sub(a.engine),
		Driver:    b.driver.Sub(a.driver),
		AgentsOwn: b.agents.Requests.Sub(a.agents.Requests),
		EngineUse: since(a.engineP, b.engineP),
		AgentsUse: since(a.agentsP, b.agentsP),
		EtcdUse:   since(a.etcdP, b.etcdP),
	}
}

// runControl runs the control-plane benchmark once.
func runControl(ctx context.Context, cfg controlConfig, log *slog.Logger) (res controlResult, err error) {
	res.Config = cfg
	dir, err := os.MkdirTemp("", "fleet-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	r := &controlRun{cfg: cfg, log: log, hc: &http.Client{Timeout: 30 * time.Second}, driver: newRequestCounter()}
	stopChild := func(c **child) {
		if *c == nil {
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := (*c).stop(sctx); err != nil {
			log.Warn("stopping child", "err", err)
		}
		*c = nil
	}

	var er etcdReady
	if r.etcd, err = startChild(ctx, "etcd", []string{"-dir", filepath.Join(dir, "etcd")}, &er); err != nil {
		return res, err
	}
	defer stopChild(&r.etcd)
	r.endpoint = er.Endpoint
	if r.cli, err = connect(r.endpoint, r.driver); err != nil {
		return res, err
	}
	defer r.cli.Close()
	r.reg = registry.FromClient(r.cli, "", log)

	ttl := cfg.TTL.String()
	if r.engine, err = startChild(ctx, "engine", append([]string{"-etcd", r.endpoint, "-ttl", ttl}, cfg.profileArgs("engine-burst")...), nil); err != nil {
		return res, err
	}
	defer stopChild(&r.engine)
	var ar agentsReady
	log.Info("starting agents", "agents", cfg.Agents)
	if r.agents, err = startChild(ctx, "agents", append([]string{"-etcd", r.endpoint, "-n", strconv.Itoa(cfg.Agents),
		"-ttl", ttl, "-per-conn", strconv.Itoa(cfg.PerConn)}, cfg.profileArgs("agents")...), &ar); err != nil {
		return res, err
	}
	defer stopChild(&r.agents)
	res.Register = ar.Register
	if err := pause.For(ctx, 2*time.Second); err != nil { // let registration settle
		return res, err
	}

	log.Info("idle window", "agents", cfg.Agents, "length", cfg.Idle)
	if res.Idle, err = r.idle(ctx); err != nil {
		return res, err
	}
	log.Info("burst", "agents", cfg.Agents, "units", cfg.Units)
	if res.Burst, err = r.burst(ctx); err != nil {
		return res, err
	}
	log.Info("one more unit", "agents", cfg.Agents)
	if res.Single, err = r.single(ctx); err != nil {
		return res, err
	}
	log.Info("idle window with units running", "agents", cfg.Agents, "length", cfg.Idle)
	if res.IdleLoaded, err = r.idle(ctx); err != nil {
		return res, err
	}
	log.Info("backlog", "agents", cfg.Agents, "units", cfg.Units)
	stopChild(&r.engine)
	if res.Backlog, err = r.backlog(ctx); err != nil {
		return res, err
	}
	var last agentsCount
	if err := r.agents.call(ctx, "count", &last); err != nil {
		return res, err
	}
	res.Registrations, res.PublishErrors = last.Registrations, last.PublishErrors
	return res, nil
}

func (r *controlRun) idle(ctx context.Context) (window, error) {
	a, err := r.snap(ctx)
	if err != nil {
		return window{}, err
	}
	if err := pause.For(ctx, r.cfg.Idle); err != nil {
		return window{}, err
	}
	b, err := r.snap(ctx)
	if err != nil {
		return window{}, err
	}
	return between(a, b), ctx.Err()
}

// waitLaunched polls the agents until n units are launched in total.
func (r *controlRun) waitLaunched(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var c agentsCount
		if err := r.agents.call(ctx, "count", &c); err != nil {
			return err
		}
		if c.Launched >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d units launched after %s", c.Launched, n, limit)
		}
		if err := pause.For(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// afterLaunch waits (up to 10 minutes) until n more units are launched
// than at snapshot a, then takes a snapshot and fetches when each unit
// was published launched.
func (r *controlRun) afterLaunch(ctx context.Context, a snapshot, n int) (snapshot, map[string]time.Time, error) {
	if err := r.waitLaunched(ctx, a.agents.Launched+n, 10*time.Minute); err != nil {
		return snapshot{}, nil, err
	}
	b, err := r.snap(ctx)
	if err != nil {
		return snapshot{}, nil, err
	}
	launched, err := r.launchTimes(ctx)
	if err != nil {
		return snapshot{}, nil, err
	}
	return b, launched, nil
}

// launchTimes fetches when each unit was published launched.
func (r *controlRun) launchTimes(ctx context.Context) (map[string]time.Time, error) {
	var rep agentsReport
	if err := r.agents.call(ctx, "report", &rep); err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(rep.Launched))
	for n, ns := range rep.Launched {
		out[n] = time.Unix(0, ns)
	}
	return out, nil
}

func (r *controlRun) burst(ctx context.Context) (burstResult, error) {
	var res burstResult
	a, err := r.snap(ctx)
	if err != nil {
		return res, err
	}
	names := unitNames("burst", r.cfg.Units)
	start := time.Now()
	accepted, err := submitUnits(ctx, r.reg, names, "", r.cfg.Submitters)
	if err != nil {
		return res, err
	}
	res.Submit = time.Since(start)
	b, launched, err := r.afterLaunch(ctx, a, len(names))
	if err != nil {
		return res, err
	}
	res.Window = between(a, b)
	res.Placements = b.engineRep.Placements - a.engineRep.Placements
	if span := b.engineRep.LastPlace.Sub(start); span > 0 {
		res.PlaceRate = float64(res.Placements) / span.Seconds()
	}
	lat := make([]time.Duration, 0, len(names))
	for i, n := range names {
		if t, ok := launched[n]; ok {
			lat = append(lat, t.Sub(accepted[i]))
		}
	}
	res.Latency = summarize(lat)
	return res, nil
}

func (r *controlRun) single(ctx context.Context) (singleResult, error) {
	var res singleResult
	var w0, w1 agentsWakes
	if err := r.agents.call(ctx, "wakes", &w0); err != nil {
		return res, err
	}
	a, err := r.snap(ctx)
	if err != nil {
		return res, err
	}
	names := unitNames("single", 1)
	accepted, err := submitUnits(ctx, r.reg, names, "", 1)
	if err != nil {
		return res, err
	}
	if err := r.waitLaunched(ctx, a.agents.Launched+1, time.Minute); err != nil {
		return res, err
	}
	if err := pause.For(ctx, time.Second); err != nil { // let every reaction to the change happen
		return res, err
	}
	b, err := r.snap(ctx)
	if err != nil {
		return res, err
	}
	if err := r.agents.call(ctx, "wakes", &w1); err != nil {
		return res, err
	}
	for i := range min(len(w0.Wakes), len(w1.Wakes)) {
		if w1.Wakes[i] > w0.Wakes[i] {
			res.AgentsWoken++
		}
	}
	res.EngineWakeups = b.engineRep.Wakeups - a.engineRep.Wakeups
	w := between(a, b)
	res.Requests = w.Etcd
	delete(res.Requests, "LeaseKeepAlive") // the agents' and engine's periodic keep-alives
	launched, err := r.launchTimes(ctx)
	if err != nil {
		return res, err
	}
	res.Latency = launched[names[0]].Sub(accepted[0])
	return res, nil
}

func (r *controlRun) backlog(ctx context.Context) (backlogResult, error) {
	res := backlogResult{Units: r.cfg.Units}
	a, err := r.snap(ctx)
	if err != nil {
		return res, err
	}
	names := unitNames("backlog", r.cfg.Units)
	if _, err := submitUnits(ctx, r.reg, names, "", r.cfg.Submitters); err != nil {
		return res, err
	}
	// The agents are paused while the engine places the backlog, so that
	// the placement rate is the engine's and etcd's alone, not shared with
	// 1,000 agents reacting on the same two cores.
	if err := r.agents.signal(syscall.SIGSTOP); err != nil {
		return res, err
	}
	resumed := false
	resume := func() error {
		if resumed {
			return nil
		}
		resumed = true
		return r.agents.signal(syscall.SIGCONT)
	}
	defer resume()
	var rep engineReport
	if r.engine, err = startChild(ctx, "engine", append([]string{"-etcd", r.endpoint, "-ttl", r.cfg.TTL.String()}, r.cfg.profileArgs("engine-backlog")...), &rep); err != nil {
		return res, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for rep.Placements < len(names) {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("engine placed %d of %d units in 10 minutes", rep.Placements, len(names))
		}
		if err := pause.For(ctx, 20*time.Millisecond); err != nil {
			return res, err
		}
		if err := r.engine.call(ctx, "report", &rep); err != nil {
			return res, err
		}
	}
	res.Placements = rep.Placements
	res.PlaceTime = rep.LastPlace.Sub(rep.LeadStart)
	res.Read = rep.ViewReady.Sub(rep.LeadStart)
	res.Plan = rep.FirstWrite.Sub(rep.ViewReady)
	if res.PlaceTime > 0 {
		res.PlaceRate = float64(res.Placements) / res.PlaceTime.Seconds()
	}
	if w := rep.LastPlace.Sub(rep.FirstWrite); w > 0 {
		res.WriteRate = float64(res.Placements) / w.Seconds()
	}
	resumedAt := time.Now()
	if err := resume(); err != nil {
		return res, err
	}
	b, launched, err := r.afterLaunch(ctx, a, len(names))
	if err != nil {
		return res, err
	}
	res.Window = between(a, b)
	var last time.Time
	for _, n := range names {
		if t := launched[n]; t.After(last) {
			last = t
		}
	}
	res.AllLaunched = last.Sub(resumedAt)
	return res, nil
}
