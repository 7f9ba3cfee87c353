package cluster_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
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

func TestFaultsOfAThreeMemberCluster(t *testing.T) {
	testenv.RequireSystemd(t)
	c := cluster.New(t, cluster.Options{Hosts: 2, EtcdMembers: 3, AgentTTL: 2 * time.Second})
	reg := c.Registry()
	count := func(timeout time.Duration) int {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ms, err := reg.Machines(ctx)
		if err != nil {
			return -1
		}
		return len(ms)
	}
	leader := func() *cluster.EtcdMember {
		var l *cluster.EtcdMember
		cluster.Eventually(t, 30*time.Second, "the etcd members agree on a leader", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m, err := c.EtcdLeader(ctx)
			l = m
			return err == nil
		})
		return l
	}

	// The etcd leader killed: another member leads, the store serves, and
	// the killed member rejoins on its data.
	old := leader()
	pid := old.PID()
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	if old.Running() {
		t.Fatal("a killed member still reports running")
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil && !zombie(pid) {
		t.Fatalf("member process %d still exists after Kill", pid)
	}
	if l := leader(); l == old {
		t.Fatalf("killed member %s still named leader", old.Name)
	}
	cluster.Eventually(t, 30*time.Second, "the store serves with 2 of 3 members", func() bool { return count(2*time.Second) == 2 })
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 30*time.Second, "3 running members agree on a leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.EtcdLeader(ctx)
		return err == nil && old.Running()
	})

	// Every member frozen: the store does not answer; thawed, it does.
	c.FreezeEtcd(true)
	if n := count(time.Second); n != -1 {
		c.FreezeEtcd(false)
		t.Fatalf("frozen etcd answered: %d machines", n)
	}
	c.FreezeEtcd(false)
	cluster.Eventually(t, 30*time.Second, "the store serves after the thaw", func() bool { return count(2*time.Second) >= 0 })
	c.WaitMachines(2)

	// A host cut from every member loses its registration; healed, it
	// registers again.
	h := c.Hosts[1]
	h.Proxy.Cut()
	cluster.Eventually(t, 30*time.Second, "the cut host's lease expires", func() bool { return count(2*time.Second) == 1 })
	h.Proxy.Heal()
	c.WaitMachines(2)

	// The host's systemd manager restarted: a new process on the same
	// socket, while fleetd keeps running.
	before := h.Systemd().PID()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.TryRestartSystemd(ctx); err != nil {
		t.Fatal(err)
	}
	if after := h.Systemd().PID(); after == before {
		t.Fatalf("systemd PID %d unchanged by a restart", after)
	}
	if _, err := h.UnitsErr("x.service"); err != nil {
		t.Fatalf("restarted manager does not answer: %v", err)
	}
	if !h.Running() {
		t.Fatal("fleetd stopped with its systemd manager")
	}

	// A clean leave and a rejoin.
	if err := h.TryStop(syscall.SIGTERM, time.Minute); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 30*time.Second, "the host left", func() bool { return count(2*time.Second) == 1 })
	if err := h.TryStart(); err != nil {
		t.Fatal(err)
	}
	c.WaitMachines(2)
}

// zombie reports whether pid is a zombie (reaped late by PID 1 here).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
