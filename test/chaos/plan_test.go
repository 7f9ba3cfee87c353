package chaos

import (
	"reflect"
	"testing"
	"time"
)

func testPlanConfig(seed uint64, d time.Duration) PlanConfig {
	return Config{Seed: seed, Duration: d, Hosts: 5, Members: 3, AgentTTL: 4 * time.Second,
		MeanGap: 1700 * time.Millisecond, ChurnGap: 10 * time.Second}.planConfig()
}

func TestPlanIsAFunctionOfTheSeed(t *testing.T) {
	a := Plan(testPlanConfig(99, 10*time.Minute))
	b := Plan(testPlanConfig(99, 10*time.Minute))
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two plans from seed 99 differ")
	}
	if c := Plan(testPlanConfig(100, 10*time.Minute)); reflect.DeepEqual(a, c) {
		t.Fatal("seeds 99 and 100 drew the same plan")
	}
}

func TestPlanCoversEveryFaultKind(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 1234567} {
		plan := Plan(testPlanConfig(seed, 10*time.Minute))
		n := map[Kind]int{}
		faults := 0
		for _, ev := range plan {
			n[ev.Kind]++
			if ev.Kind.Fault() {
				faults++
			}
		}
		for _, k := range Kinds {
			if n[k] == 0 {
				t.Errorf("seed %d: no %s in 10 minutes", seed, k)
			}
		}
		if n[Churn] == 0 {
			t.Errorf("seed %d: no churn", seed)
		}
		if faults < 200 {
			t.Errorf("seed %d: %d faults planned in 10 minutes, want at least 200", seed, faults)
		}
	}
	smoke := Plan(testPlanConfig(smokeSeed, smokeDuration))
	n := map[Kind]int{}
	for _, ev := range smoke {
		n[ev.Kind]++
	}
	for _, k := range Kinds {
		if n[k] == 0 {
			t.Errorf("smoke plan (seed %d, %s) has no %s: %v", smokeSeed, smokeDuration, k, smoke)
		}
	}
}

func TestPlanKeepsTargetsApart(t *testing.T) {
	cfg := testPlanConfig(7, 10*time.Minute)
	plan := Plan(cfg)
	busy := map[string]time.Duration{}
	type imp struct{ from, to time.Duration }
	var imps []imp
	for i, ev := range plan {
		if i > 0 && ev.At < plan[i-1].At {
			t.Fatalf("events out of order at #%d", i)
		}
		if ev.At+ev.Hold > cfg.Duration+100*time.Millisecond {
			t.Errorf("%s outlasts the %s phase", ev, cfg.Duration)
		}
		var res string
		switch {
		case ev.Kind.hostBound():
			if ev.Host < 0 || ev.Host >= cfg.Hosts {
				t.Fatalf("%s: no host", ev)
			}
			res = resource(ev.Kind, ev.Host)
		case ev.Kind == EtcdKill || ev.Kind == EtcdLeaderKill || ev.Kind == EtcdFreeze:
			res = "etcd"
			if ev.Kind == EtcdKill && (ev.Member < 0 || ev.Member >= cfg.Members) {
				t.Fatalf("%s: no member", ev)
			}
		case ev.Kind == BadUnit:
			if ev.Unit == "" || (ev.Fix != FixReplace && ev.Fix != FixDestroy) {
				t.Fatalf("%s: no unit or fix", ev)
			}
		}
		if res != "" {
			if busy[res] > ev.At {
				t.Errorf("%s starts while %s is still busy", ev, res)
			}
			busy[res] = ev.At + ev.Hold + overhead[ev.Kind]
		}
		if ev.Kind.impairs() {
			n := 0
			for _, x := range imps {
				if x.to > ev.At {
					n++
				}
			}
			if n >= cfg.MaxImpaired {
				t.Errorf("%s: %d hosts already planned out of the cluster", ev, n)
			}
			imps = append(imps, imp{ev.At, ev.At + ev.Hold + overhead[ev.Kind]})
		}
	}
}
