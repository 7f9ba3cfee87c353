package fleetctl

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

var update = flag.Bool("update", false, "rewrite the golden files of the command tests")

const (
	helloV2    = "[Unit]\nDescription=Hello again\n\n[Service]\nExecStart=/bin/sleep 2000\n"
	globalUnit = "[Unit]\nDescription=Everywhere\n\n[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n"
	// metaUnit wants a metadata no machine of the simulated clusters has.
	metaUnit = "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nMachineMetadata=region=mars\n"
)

// twoMachines is a cluster of two machines, the second with metadata.
var twoMachines = clusterOptions{machines: []unit.Machine{
	{ID: testMachine, PublicIP: testIP},
	{ID: testMachine2, PublicIP: testIP2, Metadata: map[string]string{"region": "eu", "disk": "ssd"}},
}}

// commandCase is one command line run against a simulated cluster. Its
// exit status, stdout and stderr are compared with
// testdata/commands/<name>.golden; go test -run TestCommands -update
// rewrites the files.
type commandCase struct {
	name    string
	cluster clusterOptions
	setup   func(t *testing.T, c *simCluster)
	run     run
	check   func(t *testing.T, c *simCluster)
}

// TestCommands runs whole command lines against a simulated cluster and
// checks what they print, their exit status and what they changed.
func TestCommands(t *testing.T) {
	e := registrytest.StartEtcd(t)
	for _, tc := range commandCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := newSimCluster(t, e, tc.cluster)
			if tc.setup != nil {
				tc.setup(t, c)
			}
			res := runFleetctl(t, c, tc.run)
			checkGolden(t, filepath.Join("testdata", "commands", goldenName(tc.name)), tc.run.args, res)
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// goldenName is the file name of a case.
func goldenName(name string) string {
	return strings.NewReplacer(" ", "_", "/", "_", "'", "", `"`, "").Replace(name) + ".golden"
}

// checkGolden compares a run with its golden file, or rewrites the file.
func checkGolden(t *testing.T, path string, args []string, res result) {
	t.Helper()
	got := fmt.Sprintf("$ fleetctl %s\n--- exit status %d\n--- stdout\n%s--- stderr\n%s",
		strings.Join(args, " "), res.code, res.stdout, res.stderr)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

func args(a ...string) run { return run{args: a} }

func withFiles(files map[string]string, a ...string) run { return run{files: files, args: a} }

var helloFile = map[string]string{"hello.service": helloUnit}

func commandCases() []commandCase {
	launched := func(name string) func(t *testing.T, c *simCluster) {
		return func(t *testing.T, c *simCluster) { c.addUnit(t, name, helloUnit, stateLaunched) }
	}
	return []commandCase{
		// submit, load, start
		{name: "start creates from local file and waits until active", run: withFiles(helloFile, "start", "hello.service"),
			check: func(t *testing.T, c *simCluster) {
				wantDesired(t, c, "hello.service", stateLaunched)
				if created, targets := c.writes(); !slices.Equal(created, []string{"hello.service"}) || len(targets) != 0 {
					t.Errorf("created %v, targets %v; want one create with its final state", created, targets)
				}
			}},
		{name: "start finds the mangled file name", run: withFiles(helloFile, "start", "hello")},
		{name: "start no-block triggers once", run: withFiles(helloFile, "start", "--no-block", "hello.service")},
		{name: "start of a loaded unit raises its target state",
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "hello.service", helloUnit, stateLoaded) },
			run:   args("start", "hello"),
			check: func(t *testing.T, c *simCluster) {
				if created, targets := c.writes(); !slices.Equal(targets, []string{"hello.service=launched"}) || len(created) != 0 {
					t.Errorf("targets %v, created %v", targets, created)
				}
			}},
		{name: "start of a global unit is not waited for", cluster: twoMachines,
			run: withFiles(map[string]string{"g.service": globalUnit}, "start", "g.service")},
		{name: "start times out waiting for launched", setup: func(_ *testing.T, c *simCluster) { c.set(func(c *simCluster) { c.place = "" }) },
			run: withFiles(helloFile, "start", "--block-attempts=1", "hello.service")},
		{name: "start times out waiting for systemd", setup: func(_ *testing.T, c *simCluster) { c.set(func(c *simCluster) { c.activeAfter = -1 }) },
			run: withFiles(helloFile, "start", "--block-attempts=2", "hello.service")},
		{name: "start waits for slow systemd within the budget",
			setup: func(_ *testing.T, c *simCluster) { c.set(func(c *simCluster) { c.activeAfter = 12 }) },
			run:   withFiles(helloFile, "start", "--block-attempts=2", "hello.service")},
		{name: "start of an unplaceable unit fails with the reason",
			setup: func(_ *testing.T, c *simCluster) {
				c.set(func(c *simCluster) { c.place, c.reason = "", "no machine matches MachineMetadata" })
			},
			run: withFiles(map[string]string{"meta.service": metaUnit}, "start", "meta.service")},
		{name: "start of several units on a terminal shows progress",
			setup: func(_ *testing.T, c *simCluster) { c.set(func(c *simCluster) { c.settleAfter = 5 }) },
			run: run{files: map[string]string{"a.service": helloUnit, "b.service": helloV2}, terminal: true,
				args: []string{"start", "a", "b"}}},
		{name: "start of several units without a terminal prints lines only",
			setup: func(_ *testing.T, c *simCluster) { c.set(func(c *simCluster) { c.settleAfter = 3 }) },
			run:   withFiles(map[string]string{"a.service": helloUnit, "b.service": helloV2}, "start", "a", "b")},
		{name: "invalid name creates nothing", run: args("start", "@x.service"), check: wantNothingCreated},
		{name: "invalid unit file creates nothing",
			run: withFiles(map[string]string{"a.service": helloUnit,
				"b.service": helloUnit + "\n[X-Fleet]\nMachineID=abc\nGlobal=true\n"}, "start", "a.service", "b.service"),
			check: wantNothingCreated},
		{name: "missing unit", run: args("load", "nope")},
		{name: "template cannot be started", run: withFiles(map[string]string{"app@.service": helloUnit}, "start", "app@.service"),
			check: wantNothingCreated},
		{name: "unknown X-Fleet option warns",
			run: withFiles(map[string]string{"hello.service": helloUnit + "\n[X-Fleet]\nFoo=bar\n"}, "submit", "hello.service")},
		{name: "submit creates inactive", run: withFiles(helloFile, "submit", "hello.service"),
			check: func(t *testing.T, c *simCluster) { wantDesired(t, c, "hello.service", stateInactive) }},
		{name: "submit of an identical unit does nothing", setup: launched("hello.service"),
			run: withFiles(helloFile, "submit", "hello.service"), check: wantNothingCreated},
		{name: "submit of a differing unit warns",
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
			run:   withFiles(map[string]string{"hello.service": helloV2}, "submit", "hello.service"), check: wantNothingCreated},
		{name: "submit --replace refuses a launched unit", setup: launched("hello.service"),
			run:   withFiles(map[string]string{"hello.service": helloV2}, "submit", "--replace", "hello.service"),
			check: wantNothingCreated},
		{name: "submit --replace of an identical unit",
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
			run:   withFiles(helloFile, "submit", "--replace", "hello.service"), check: wantNothingCreated},
		{name: "submit --replace replaces an inactive unit",
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
			run:   withFiles(map[string]string{"hello.service": helloV2}, "submit", "--replace", "hello.service"),
			check: func(t *testing.T, c *simCluster) { wantDescription(t, c, "hello.service", "Hello again") }},
		{name: "start --replace replaces a launched unit", setup: launched("hello.service"),
			run: withFiles(map[string]string{"hello.service": helloV2}, "start", "--replace", "hello.service"),
			check: func(t *testing.T, c *simCluster) {
				wantDesired(t, c, "hello.service", stateLaunched)
				wantDescription(t, c, "hello.service", "Hello again")
			}},
		{name: "load --replace refuses a launched unit", setup: launched("hello.service"),
			run: withFiles(map[string]string{"hello.service": helloV2}, "load", "--replace", "hello.service")},
		{name: "instance from a template in the registry",
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "app@.service", helloUnit, stateInactive) },
			run:   args("load", "app@1"),
			check: func(t *testing.T, c *simCluster) {
				if c.unit(t, "app@1.service").Hash != c.unit(t, "app@.service").Hash {
					t.Errorf("instance hash differs from its template")
				}
			}},
		{name: "submit --sign is ignored", run: withFiles(helloFile, "submit", "--sign", "hello.service")},
		{name: "load no-block of a global unit", cluster: twoMachines,
			run: withFiles(map[string]string{"g.service": globalUnit}, "load", "--no-block", "g")},

		// stop, unload, destroy
		{name: "stop a launched unit", setup: launched("hello.service"), run: args("stop", "hello"),
			check: func(t *testing.T, c *simCluster) { wantDesired(t, c, "hello.service", stateLoaded) }},
		{name: "stop an inactive unit fails",
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
			run:   args("stop", "hello")},
		{name: "stop unknown units", run: args("stop", "nope")},
		{name: "stop times out", setup: func(t *testing.T, c *simCluster) {
			c.addUnit(t, "hello.service", helloUnit, stateLaunched)
			c.settle(t)
			c.set(func(c *simCluster) { c.frozen = true })
		}, run: args("stop", "--block-attempts=1", "hello")},
		{name: "unload with no-block", cluster: twoMachines,
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.addUnit(t, "g.service", globalUnit, stateLaunched)
			},
			run: args("unload", "--no-block", "hello", "g"),
			check: func(t *testing.T, c *simCluster) {
				wantDesired(t, c, "hello.service", stateInactive)
				wantDesired(t, c, "g.service", stateInactive)
			}},
		{name: "unload waits for inactive",
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "hello.service", helloUnit, stateLoaded) },
			run:   args("unload", "hello")},
		{name: "destroy", setup: launched("hello.service"), run: args("destroy", "hello", "nope"),
			check: func(t *testing.T, c *simCluster) {
				if c.unit(t, "hello.service") != nil {
					t.Errorf("hello.service still exists")
				}
			}},
		{name: "destroy no-block", setup: launched("hello.service"), run: args("destroy", "--no-block", "hello")},
		{name: "destroy unknown units", run: args("destroy", "nope")},

		// restart
		{name: "restart stops then starts a launched unit", setup: launched("hello.service"), run: args("restart", "hello"),
			check: func(t *testing.T, c *simCluster) {
				_, targets := c.writes()
				want := []string{"hello.service=loaded", "hello.service=launched"}
				if !slices.Equal(targets, want) {
					t.Errorf("target states %v, want %v", targets, want)
				}
			}},
		{name: "restart starts a loaded unit",
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "hello.service", helloUnit, stateLoaded) },
			run:   args("restart", "hello")},
		{name: "restart refuses an inactive unit and restarts the others",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "a.service", helloUnit, stateInactive)
				c.addUnit(t, "b.service", helloUnit, stateLaunched)
			},
			run: args("restart", "a", "b")},
		{name: "restart submits a missing unit without starting it", run: withFiles(helloFile, "restart", "hello"),
			check: func(t *testing.T, c *simCluster) { wantDesired(t, c, "hello.service", stateInactive) }},
		{name: "restart of a global unit on every machine", cluster: twoMachines,
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "g.service", globalUnit, stateLaunched) },
			run:   args("restart", "g")},
		{name: "restart times out in the stop phase",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.settle(t)
				c.set(func(c *simCluster) { c.frozen = true })
			},
			run: args("restart", "--block-attempts=1", "hello")},
		// One attempt is 8 polls: the stop takes 1, the start 1 for launched
		// then one per state poll until systemd says active.
		{name: "restart within one budget for stop and start",
			setup: func(t *testing.T, c *simCluster) {
				c.set(func(c *simCluster) { c.activeAfter = 6 })
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
			},
			run: args("restart", "--block-attempts=1", "hello")},
		{name: "restart shares one budget between stop and start",
			setup: func(t *testing.T, c *simCluster) {
				c.set(func(c *simCluster) { c.activeAfter = 7 })
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
			},
			run: args("restart", "--block-attempts=1", "hello")},

		// list-units
		{name: "list-units empty", run: args("list-units")},
		{name: "list-units default", cluster: twoMachines, setup: someUnits, run: args("list-units")},
		{name: "list-units full", cluster: twoMachines, setup: someUnits, run: args("list-units", "--full")},
		{name: "list-units -l no legend", cluster: twoMachines, setup: someUnits, run: args("list-units", "-l", "--no-legend")},
		{name: "list-units all fields", cluster: twoMachines, setup: someUnits,
			run: args("list-units", "--fields=unit,load,active,sub,machine,hash")},
		{name: "list-units json", cluster: twoMachines, setup: someUnits, run: args("list-units", "-o", "json")},
		{name: "list-units yaml", cluster: twoMachines, setup: someUnits, run: args("list-units", "--output=yaml")},
		{name: "list-units json empty", run: args("list-units", "-o", "json")},
		{name: "list-units bad output", run: args("list-units", "-o", "xml")},
		{name: "list-units empty fields", run: args("list-units", "--fields=")},
		{name: "list-units invalid field", run: args("list-units", "--fields=unit,dstate")},

		// list-unit-files
		{name: "list-unit-files default", cluster: twoMachines, setup: someUnits, run: args("list-unit-files")},
		{name: "list-unit-files full", cluster: twoMachines, setup: someUnits, run: args("list-unit-files", "--full")},
		{name: "list-unit-files no legend", cluster: twoMachines, setup: someUnits, run: args("list-unit-files", "--no-legend")},
		{name: "list-unit-files all fields", cluster: twoMachines, setup: someUnits,
			run: args("list-unit-files", "--fields=unit,global,dstate,state,target,hash,desc,reason")},
		{name: "list-unit-files tmachine", cluster: twoMachines, setup: someUnits,
			run: args("list-unit-files", "--fields=unit,tmachine")},
		{name: "list-unit-files json", cluster: twoMachines, setup: someUnits, run: args("list-unit-files", "-o", "json")},
		{name: "list-unit-files yaml", cluster: twoMachines, setup: someUnits, run: args("list-unit-files", "-o", "yaml")},
		{name: "list-unit-files has no -l", run: args("list-unit-files", "-l")},

		// list-machines
		{name: "list-machines default", cluster: twoMachines, run: args("list-machines")},
		{name: "list-machines full", cluster: twoMachines, run: args("list-machines", "--full")},
		{name: "list-machines -l no legend", cluster: twoMachines, run: args("list-machines", "-l", "--no-legend")},
		{name: "list-machines fields", cluster: twoMachines, run: args("list-machines", "--fields=ip,machine")},
		{name: "list-machines json", cluster: twoMachines, run: args("list-machines", "-o", "json")},
		{name: "list-machines yaml", cluster: twoMachines, run: args("list-machines", "-o", "yaml")},
		{name: "list-machines unreachable API",
			run: run{env: map[string]string{"FLEETCTL_ENDPOINT": "unix:///nonexistent/fleet.sock"}, args: []string{"list-machines"}}},

		// cat
		{name: "cat prints the canonical form",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", "# comment\n"+helloUnit, stateInactive)
			},
			run: args("cat", "hello")},
		{name: "cat unknown unit", run: args("cat", "nope")},
		{name: "cat without unit", run: args("cat")},

		// status and journal: the paths decided before any machine is asked
		{name: "status of a missing unit", run: args("status", "nope")},
		{name: "status of an unloaded unit",
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
			run:   args("status", "hello")},
		{name: "status of an unplaceable unit shows the reason",
			setup: func(t *testing.T, c *simCluster) {
				c.set(func(c *simCluster) { c.place, c.reason = "", "no machine matches MachineMetadata region=mars" })
				c.addUnit(t, "meta.service", metaUnit, stateLaunched)
			},
			run: args("status", "meta")},
		{name: "status accepts fleet's flags", run: args("status", "--ssh-port=2222", "--block-attempts=3", "--no-block", "nope")},
		{name: "status without units", run: args("status")},
		{name: "journal of a missing unit", run: args("journal", "nope")},
		{name: "journal of an unscheduled unit",
			setup: func(t *testing.T, c *simCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
			run:   args("journal", "--lines=5", "-f", "--sudo", "--ssh-port=2222", "hello")},
		{name: "journal of a global unit nowhere", setup: func(t *testing.T, c *simCluster) {
			c.addUnit(t, "g.service", globalUnit, stateInactive)
		}, run: args("journal", "g")},
		{name: "journal needs one unit", run: args("journal", "a", "b")},
		{name: "journal negative lines", run: args("journal", "-n", "-1", "a")},

		// drivers, deprecated and hidden commands
		{name: "etcd driver is unsupported", run: args("--driver=etcd", "list-units")},
		{name: "unknown driver", run: args("--driver=zookeeper", "list-units")},
		{name: "API driver in any case", run: args("--driver=api", "list-machines")},
		{name: "experimental-api is deprecated", run: args("--experimental-api=false", "list-machines")},
		{name: "etcd key prefix is accepted", run: args("--etcd-key-prefix=/other/", "list-machines")},
		{name: "verify is deprecated", run: args("verify", "hello.service")},
		{name: "fd-forward needs a socket", run: args("fd-forward")},
		{name: "fd-forward to a missing socket", run: args("fd-forward", "/nonexistent/fleet.sock")},
		{name: "version", run: args("version")},

		// completion of names from the cluster
		{name: "complete unit names", setup: someUnits, run: args("__complete", "status", "he")},
		{name: "complete machine ids", cluster: twoMachines, run: args("__complete", "ssh", "--machine", "")},
		{name: "complete ssh target", cluster: twoMachines, setup: someUnits, run: args("__complete", "ssh", "")},
		{name: "complete start offers files too", setup: someUnits, run: args("__complete", "start", "")},
		{name: "complete shells", run: args("__complete", "completion", "")},
		{name: "completion needs a shell", run: args("completion")},
		{name: "completion of an unknown shell", run: args("completion", "tcsh")},
	}
}

// someUnits stores a launched unit, a loaded one, a launched global unit
// and a unit that cannot be placed.
func someUnits(t *testing.T, c *simCluster) {
	c.set(func(c *simCluster) {
		c.reason = "no machine matches MachineMetadata region=mars"
		c.unplaceable = map[string]bool{"meta.service": true}
	})
	c.addUnit(t, "hello.service", helloUnit, stateLaunched)
	c.addUnit(t, "world.service", helloV2, stateLoaded)
	c.addUnit(t, "g.service", globalUnit, stateLaunched)
	c.addUnit(t, "meta.service", metaUnit, stateLaunched)
}

func wantDesired(t *testing.T, c *simCluster, name, desired string) {
	t.Helper()
	u := c.unit(t, name)
	if u == nil {
		t.Fatalf("unit %s does not exist", name)
	}
	if string(u.Desired) != desired {
		t.Errorf("unit %s desired state = %q, want %q", name, u.Desired, desired)
	}
}

func wantDescription(t *testing.T, c *simCluster, name, desc string) {
	t.Helper()
	u := c.unit(t, name)
	if u == nil {
		t.Fatalf("unit %s does not exist", name)
	}
	f, err := unit.Parse(u.Content)
	if err != nil {
		t.Fatalf("unit %s: %v", name, err)
	}
	if got := f.Description(); got != desc {
		t.Errorf("unit %s description = %q, want %q", name, got, desc)
	}
}

func wantNothingCreated(t *testing.T, c *simCluster) {
	t.Helper()
	if created, _ := c.writes(); len(created) > 0 {
		t.Errorf("units created: %s", strings.Join(created, ", "))
	}
}
