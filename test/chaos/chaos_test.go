package chaos

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fleet-next/fleet/internal/testenv"
	"github.com/fleet-next/fleet/test/cluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.CleanupBinaries()
	os.Exit(code)
}

// Without CHAOS_SEED and CHAOS_DURATION, TestChaos is the smoke run of
// `make test`: a fixed seed and a short fault phase.
const (
	smokeSeed     = 1
	smokeDuration = 75 * time.Second
	longDuration  = 10 * time.Minute
	// overheadBound covers cluster start-up, settling, final checks and
	// teardown on top of the fault phase.
	overheadBound = 6 * time.Minute
)

// settings reads CHAOS_SEED and CHAOS_DURATION (CHAOS_LOGS, a directory,
// keeps every fleetd's log): with neither set, the smoke
// run; otherwise the seed defaults to the time and the duration to 10m.
func settings(getenv func(string) string, now time.Time) (seed uint64, d time.Duration, err error) {
	s, ds := getenv("CHAOS_SEED"), getenv("CHAOS_DURATION")
	if s == "" && ds == "" {
		return smokeSeed, smokeDuration, nil
	}
	seed, d = uint64(now.UnixNano()), longDuration
	if s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("CHAOS_SEED=%q: want an unsigned integer: %w", s, err)
		}
	}
	if ds != "" {
		if d, err = time.ParseDuration(ds); err != nil || d <= 0 {
			return 0, 0, fmt.Errorf("CHAOS_DURATION=%q: want a positive duration such as 10m", ds)
		}
	}
	return seed, d, nil
}

func TestChaos(t *testing.T) {
	testenv.RequireSystemd(t) // a 5-host cluster of private systemd managers
	seed, d, err := settings(os.Getenv, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < d+overheadBound {
		t.Fatalf("a %s fault phase needs go test -timeout above %s (make chaos sets it)", d, d+overheadBound)
	}
	res := Run(t, Config{Seed: seed, Duration: d, Logf: t.Logf, LogDir: os.Getenv("CHAOS_LOGS")})
	t.Log("\n" + res.Report())
	for _, v := range res.Violations {
		t.Errorf("violation [%s] %s: %s", v.Invariant, v.Key, v.Detail)
	}
	for _, p := range res.Problems {
		t.Errorf("harness problem: %s", p)
	}
}

func TestSettings(t *testing.T) {
	now := time.Unix(0, 1234)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		env  map[string]string
		seed uint64
		d    time.Duration
		err  bool
	}{
		{env: nil, seed: smokeSeed, d: smokeDuration},
		{env: map[string]string{"CHAOS_SEED": "42"}, seed: 42, d: longDuration},
		{env: map[string]string{"CHAOS_DURATION": "3m"}, seed: 1234, d: 3 * time.Minute},
		{env: map[string]string{"CHAOS_SEED": "7", "CHAOS_DURATION": "90s"}, seed: 7, d: 90 * time.Second},
		{env: map[string]string{"CHAOS_SEED": "-1"}, err: true},
		{env: map[string]string{"CHAOS_DURATION": "ten"}, err: true},
		{env: map[string]string{"CHAOS_DURATION": "0s"}, err: true},
	}
	for i, c := range cases {
		seed, d, err := settings(env(c.env), now)
		if (err != nil) != c.err {
			t.Errorf("case %d: error %v, want error %v", i, err, c.err)
			continue
		}
		if !c.err && (seed != c.seed || d != c.d) {
			t.Errorf("case %d: seed %d duration %s, want %d %s", i, seed, d, c.seed, c.d)
		}
	}
}
