package fleetctl

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

// TestSubmitRefusesLocallyWhatTheAPIRefuses submits each kind of unit the
// API refuses (issue "Hostile input"): fleetctl must refuse it with the
// same reason before it writes anything.
func TestSubmitRefusesLocallyWhatTheAPIRefuses(t *testing.T) {
	e := registrytest.StartEtcd(t)
	svc := "[Service]\nExecStart=/bin/true\n"
	tests := []struct {
		name  string
		file  string // local file name
		text  string
		wantE string // stderr
	}{
		{name: "carriage return", file: "cr.service", text: "[Service]\nExecStart=/bin/sleep 9\rExecStartPre=/bin/touch /tmp/x\n",
			wantE: `Error creating units: unit cr.service: value of ExecStart in [Service] holds the control character '\r', which systemd would not read as part of the value`},
		{name: "empty option name", file: "eo.service", text: "[Service]\n=/bin/true\n",
			wantE: `Error creating units: unit eo.service: option without a name in [Service] (value "/bin/true")`},
		{name: "empty section", file: "es.service", text: "[]\nExecStart=/bin/true\n",
			wantE: `Error creating units: unit es.service: option "ExecStart" is in a section without a name`},
		{name: "invalid UTF-8 value", file: "iu.service", text: "[Unit]\nDescription=caf\xe9\n" + svc,
			wantE: `Error creating units: unit iu.service: value of Description in [Unit] is not valid UTF-8`},
		{name: "invalid UTF-8 name", file: "in.service", text: "[Unit]\nD\xffscription=x\n" + svc,
			wantE: `Error creating units: unit file in.service: parse unit file: option name "D\xffscription" is not valid UTF-8`},
		{name: "Global maybe", file: "gm.service", text: svc + "\n[X-Fleet]\nGlobal=maybe\n",
			wantE: `Error creating units: unit gm.service: invalid Global value "maybe": want true or false (yes/no, 1/0, on/off, t/f)`},
		{name: "unterminated quote", file: "cu.service", text: svc + "\n[X-Fleet]\nConflicts=\"unterminated\n",
			wantE: `Error creating units: unit cu.service: value of Conflicts in [X-Fleet] has an unterminated quote: "\"unterminated"`},
		{name: "WantedBy a path", file: "wb.service", text: svc + "\n[Install]\nWantedBy=../..\n",
			wantE: `Error creating units: unit wb.service: invalid WantedBy value "../.." in [Install]: invalid unit type: ""`},
		{name: "leading dot", file: "..service", text: svc,
			wantE: `Error creating units: ..service: unit name cannot start in ".": systemd ignores hidden unit files`},
		{name: "241 characters", file: strings.Repeat("a", 233) + ".service", text: svc,
			wantE: `Error creating units: ` + strings.Repeat("a", 233) + `.service: unit name exceeds maximum length (240)`},
		{name: "snapshot", file: "x.snapshot", text: svc,
			wantE: `Error creating units: x.snapshot: unsupported unit type "snapshot": systemd removed snapshot units in version 228`},
		{name: "busname", file: "x.busname", text: svc,
			wantE: `Error creating units: x.busname: unsupported unit type "busname": systemd removed busname units in version 230`},
		{name: "root mount", file: "-.mount", text: "[Mount]\nWhat=/dev/sda1\n",
			wantE: `Error creating units: -.mount: unit name "-.mount" is reserved: systemd manages that unit itself`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newSimCluster(t, e, clusterOptions{})
			res := runFleetctl(t, c, withFiles(map[string]string{tc.file: tc.text}, "submit", "--", tc.file))
			if res.code != ExitError || strings.TrimSuffix(res.stderr, "\n") != tc.wantE {
				t.Fatalf("exit %d, stderr %q\nwant exit 1, stderr %q", res.code, res.stderr, tc.wantE)
			}
			if created, targets := c.writes(); len(created)+len(targets) != 0 {
				t.Errorf("wrote %v %v after a refused unit", created, targets)
			}
		})
	}
}

// TestSubmitRefusesFilesThatAreNotRegular submits /dev/zero, a FIFO and a
// file over the unit size limit from the real file system: each is
// refused at once, without reading more than the limit.
func TestSubmitRefusesFilesThatAreNotRegular(t *testing.T) {
	e := registrytest.StartEtcd(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.service")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.service")
	text := "[Service]\nExecStart=/bin/true\n"
	text += strings.Repeat("# a long comment line of forty bytes...\n", (unit.MaxContentBytes-len(text))/40+1)
	if err := os.WriteFile(big, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, arg, wantE string
	}{
		{name: "/dev/zero", arg: "/dev/zero",
			wantE: "Error creating units: read unit file: /dev/zero is a device, not a regular file"},
		{name: "/dev/urandom", arg: "/dev/urandom",
			wantE: "Error creating units: read unit file: /dev/urandom is a device, not a regular file"},
		{name: "FIFO", arg: fifo,
			wantE: "Error creating units: read unit file: " + fifo + " is a named pipe (FIFO), not a regular file"},
		{name: "over the size limit", arg: big,
			wantE: "Error creating units: read unit file: " + big + " is larger than 524288 bytes (512 KiB), the most a unit may hold"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newSimCluster(t, e, clusterOptions{})
			done := make(chan result, 1)
			go func() { done <- runFleetctl(t, c, run{realFiles: true, args: []string{"submit", tc.arg}}) }()
			var res result
			select {
			case res = <-done:
			case <-time.After(time.Minute): // only keeps a blocked read from hanging the suite
				t.Fatalf("fleetctl submit %s did not return", tc.arg)
			}
			if res.code != ExitError || strings.TrimSuffix(res.stderr, "\n") != tc.wantE {
				t.Fatalf("exit %d, stderr %q\nwant exit 1, stderr %q", res.code, res.stderr, tc.wantE)
			}
			if created, _ := c.writes(); len(created) != 0 {
				t.Errorf("created %v", created)
			}
		})
	}
}

func TestReadRegularFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "u.service")
	if err := os.WriteFile(path, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := readRegularFile(path, 5); err != nil || string(b) != "12345" {
		t.Errorf("a file of the limit: %q, %v", b, err)
	}
	if _, err := readRegularFile(path, 4); err == nil || !strings.Contains(err.Error(), "is larger than 4 bytes") {
		t.Errorf("a file over the limit: %v", err)
	}
	if _, err := readRegularFile(dir, 4); !os.IsNotExist(err) && !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("a directory: %v, want EISDIR", err)
	}
	if _, err := readRegularFile(filepath.Join(dir, "none"), 4); !os.IsNotExist(err) {
		t.Errorf("a missing file: %v", err)
	}
}
