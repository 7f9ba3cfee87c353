package unit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateContents covers the checks Validate makes before fleet's own
// requirement rules: each case is one kind of input that got through
// before (issue "Hostile input") or one that must stay valid.
func TestValidateContents(t *testing.T) {
	svc := func(extra ...Option) []Option {
		return append([]Option{{"Unit", "Description", "x"}, {"Service", "ExecStart", "/bin/true"}}, extra...)
	}
	tests := []struct {
		name    string
		opts    []Option
		wantErr string // "" = valid
	}{
		{name: "plain service", opts: svc()},
		{name: "tab in a value", opts: svc(Option{"Service", "Environment", "A=1\tB=2"})},
		{name: "continued value", opts: svc(Option{"Service", "ExecStartPre", "/bin/sh -c \\\n  true"})},
		{name: "unknown section and option stay allowed", opts: svc(Option{"X-Custom", "Anything", "goes"},
			Option{"X-Fleet", "Frobnicate", "yes"})},
		{name: "non-ASCII text", opts: svc(Option{"Unit", "Documentation", "héllo wörld ✓"})},

		{name: "carriage return in a value hides an option from fleet",
			opts:    svc(Option{"Service", "ExecStart", "/bin/sleep 9\rExecStartPre=/bin/touch /tmp/x"}),
			wantErr: `value of ExecStart in [Service] holds the control character '\r', which systemd would not read as part of the value`},
		{name: "NUL in a value", opts: svc(Option{"Service", "ExecStop", "/bin/true\x00ExecStopPost=/bin/x"}),
			wantErr: `value of ExecStop in [Service] holds the control character '\x00', which systemd would not read as part of the value`},
		{name: "escape in a value", opts: svc(Option{"Unit", "Description", "\x1b[2Jgone"}),
			wantErr: `value of Description in [Unit] holds the control character '\x1b', which systemd would not read as part of the value`},
		{name: "control character in an option name", opts: svc(Option{"Service", "Exec\x07Start", "/bin/true"}),
			wantErr: `option name "Exec\aStart" in [Service] holds the control character '\a'`},
		{name: "control character in a section name", opts: svc(Option{"Ser\x00vice", "A", "b"}),
			wantErr: `section name "Ser\x00vice" holds the control character '\x00'`},
		{name: "empty option name", opts: svc(Option{"Service", "", "/bin/true"}),
			wantErr: `option without a name in [Service] (value "/bin/true")`},
		{name: "empty section", opts: svc(Option{"", "A", "b"}),
			wantErr: `option "A" is in a section without a name`},
		{name: "invalid UTF-8 in a value", opts: svc(Option{"Unit", "Description", "caf\xe9"}),
			wantErr: `value of Description in [Unit] is not valid UTF-8`},
		{name: "invalid UTF-8 in a section", opts: svc(Option{"X-\xff", "A", "b"}),
			wantErr: `section name "X-\xff" is not valid UTF-8`},

		{name: "Global true values", opts: svc(Option{"X-Fleet", "Global", "yes"}, Option{"X-Fleet", "Global", "T"},
			Option{"X-Fleet", "Global", "1"}, Option{"X-Fleet", "Global", "on"}, Option{"X-Fleet", "Global", "true"})},
		{name: "Global false values", opts: svc(Option{"X-Fleet", "Global", "no"}, Option{"X-Fleet", "Global", "FALSE"},
			Option{"X-Fleet", "Global", "0"}, Option{"X-Fleet", "Global", "off"}, Option{"X-Fleet", "Global", "f"},
			Option{"X-Fleet", "Global", ""})},
		{name: "Global quoted", opts: svc(Option{"X-Fleet", "Global", `"true"`})},
		{name: "Global maybe", opts: svc(Option{"X-Fleet", "Global", "maybe"}),
			wantErr: `invalid Global value "maybe": want true or false (yes/no, 1/0, on/off, t/f)`},
		{name: "Global y is no fleet boolean", opts: svc(Option{"X-Fleet", "Global", "y"}),
			wantErr: `invalid Global value "y": want true or false (yes/no, 1/0, on/off, t/f)`},

		{name: "quoted multi-values", opts: svc(Option{"X-Fleet", "Conflicts", `"a*.service" "b*.service"`},
			Option{"X-Fleet", "MachineMetadata", `"region=us" "disk=ssd"`})},
		{name: "quotes inside a plain value", opts: svc(Option{"X-Fleet", "MachineMetadata", `note="x"`})},
		{name: "unterminated quote", opts: svc(Option{"X-Fleet", "Conflicts", `"unterminated`}),
			wantErr: `value of Conflicts in [X-Fleet] has an unterminated quote: "\"unterminated"`},
		{name: "last value unterminated", opts: svc(Option{"X-Fleet", "MachineOf", `"a.service" "b.service`}),
			wantErr: `value of MachineOf in [X-Fleet] has an unterminated quote: "\"a.service\" \"b.service"`},
		{name: "odd quotes", opts: svc(Option{"X-Fleet", "MachineMetadata", `"a=b"c"`}),
			wantErr: `value of MachineMetadata in [X-Fleet] has an unterminated quote: "\"a=b\"c\""`},
		{name: "a lone quote", opts: svc(Option{"X-Fleet", "Replaces", `"`}),
			wantErr: `value of Replaces in [X-Fleet] has an unterminated quote: "\""`},
		{name: "quotes in an unknown option are not ours to read", opts: svc(Option{"X-Fleet", "Custom", `"x`})},

		{name: "install targets", opts: svc(Option{"Install", "WantedBy", "multi-user.target default.target"},
			Option{"Install", "RequiredBy", "getty@tty1.service"}, Option{"Install", "Alias", "hello-%i.service"},
			Option{"Install", "Also", "hello.socket"}, Option{"Install", "UpheldBy", "x@.target"},
			Option{"Install", "DefaultInstance", "anything goes"})},
		{name: "WantedBy path", opts: svc(Option{"Install", "WantedBy", "../.."}),
			wantErr: `invalid WantedBy value "../.." in [Install]: invalid unit type: ""`},
		{name: "RequiredBy with a slash", opts: svc(Option{"Install", "RequiredBy", "multi-user.target ../etc/x.target"}),
			wantErr: `invalid RequiredBy value "../etc/x.target" in [Install]: invalid character '/' in unit name`},
		{name: "Alias without a type", opts: svc(Option{"Install", "Alias", "hello"}),
			wantErr: `invalid Alias value "hello" in [Install]: not a unit name: want "name.type"`},
		{name: "Also of a type systemd dropped", opts: svc(Option{"Install", "Also", "x.snapshot"}),
			wantErr: `invalid Also value "x.snapshot" in [Install]: invalid unit type: "snapshot"`},
		{name: "UpheldBy starting with @", opts: svc(Option{"Install", "UpheldBy", "@x.target"}),
			wantErr: `invalid UpheldBy value "@x.target" in [Install]: unit name cannot start in "@"`},
		{name: "a literal percent is no name character", opts: svc(Option{"Install", "WantedBy", "50%%.target"}),
			wantErr: `invalid WantedBy value "50%%.target" in [Install]: invalid character '%' in unit name`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := FromOptions(tc.opts)
			if err != nil {
				t.Fatalf("FromOptions: %v", err)
			}
			err = f.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate = %q, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Validate = nil, want %q", tc.wantErr)
			case tc.wantErr != "" && err.Error() != tc.wantErr:
				t.Fatalf("Validate = %q\nwant       %q", err, tc.wantErr)
			}
		})
	}
}

// TestValidateParsedText checks the same rules on unit file text, the way
// fleetctl reads it.
func TestValidateParsedText(t *testing.T) {
	tests := []struct {
		name, text, wantErr string
	}{
		{name: "empty option name", text: "[Service]\n=/bin/true\n", wantErr: `option without a name in [Service] (value "/bin/true")`},
		{name: "empty section", text: "[]\nExecStart=/bin/true\n", wantErr: `option "ExecStart" is in a section without a name`},
		{name: "carriage return inside a line", text: "[Service]\nExecStart=/bin/sleep 9\rExecStartPre=/bin/touch /tmp/x\n",
			wantErr: `value of ExecStart in [Service] holds the control character '\r', which systemd would not read as part of the value`},
		{name: "invalid UTF-8 value", text: "[Unit]\nDescription=\xff\n", wantErr: `value of Description in [Unit] is not valid UTF-8`},
		{name: "a carriage return before the continuation", text: "[Service]\nExecStart=/bin/true \r\\\n  x\n",
			wantErr: `value of ExecStart in [Service] holds the control character '\r', which systemd would not read as part of the value`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.text)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := f.Validate(); err == nil || err.Error() != tc.wantErr {
				t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateSizeLimit(t *testing.T) {
	// "[Service]\nA=" + value + "\n" is the canonical form.
	overhead := len("[Service]\nA=\n")
	at := &File{Options: []Option{{"Service", "A", strings.Repeat("x", MaxContentBytes-overhead)}}}
	if n := len(at.Serialize()); n != MaxContentBytes {
		t.Fatalf("test unit is %d bytes, want %d", n, MaxContentBytes)
	}
	if err := at.Validate(); err != nil {
		t.Fatalf("a unit of exactly MaxContentBytes: %v", err)
	}
	over := &File{Options: []Option{{"Service", "A", strings.Repeat("x", MaxContentBytes-overhead+1)}}}
	err := over.Validate()
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Validate of %d bytes = %v, want ErrTooLarge", MaxContentBytes+1, err)
	}
	if want := "unit contents are 524289 bytes: unit contents exceed the limit of 524288 bytes (512 KiB)"; err.Error() != want {
		t.Fatalf("error = %q, want %q", err, want)
	}
}

// TestFleetExamplesStayValid checks that every unit of the documentation
// and of the test data, all valid for fleet, stays valid, and that the
// documented invalid ones stay invalid for fleet's reasons.
func TestFleetExamplesStayValid(t *testing.T) {
	for _, pattern := range []string{"../docs/examples/*.*", "testdata/*.service"} {
		paths, err := filepath.Glob(pattern)
		if err != nil || len(paths) == 0 {
			t.Fatalf("glob %s: %v (%d files)", pattern, err, len(paths))
		}
		for _, p := range paths {
			name := filepath.Base(p)
			t.Run(name, func(t *testing.T) {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := ValidateName(name); err != nil {
					t.Errorf("ValidateName: %v", err)
				}
				f, err := Parse(string(b))
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if err := f.Validate(); err != nil {
					t.Errorf("Validate: %v", err)
				}
			})
		}
	}
	paths, err := filepath.Glob("../docs/examples/invalid/*.service")
	if err != nil || len(paths) == 0 {
		t.Fatalf("glob invalid examples: %v", err)
	}
	for _, p := range paths {
		t.Run("invalid/"+filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(string(b))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := f.Validate(); err == nil {
				t.Error("Validate accepted it")
			}
		})
	}
}

func TestReplacesCycle(t *testing.T) {
	reqs := func(globs ...string) Requirements { return Requirements{Replaces: globs} }
	tests := []struct {
		name   string
		unit   string
		reqs   Requirements
		others map[string]Requirements
		want   string
	}{
		{name: "nothing replaced", unit: "a.service", reqs: reqs(), others: map[string]Requirements{"b.service": reqs("a.service")}},
		{name: "replacing itself is no cycle", unit: "a.service", reqs: reqs("a*")},
		{name: "two units", unit: "a.service", reqs: reqs("b.service"),
			others: map[string]Requirements{"b.service": reqs("a.service")},
			want:   "a.service replaces b.service, b.service replaces a.service"},
		{name: "through a glob", unit: "ra.service", reqs: reqs("r?.service"),
			others: map[string]Requirements{"rb.service": reqs("ra.service"), "rc.service": reqs()},
			want:   "ra.service replaces rb.service, rb.service replaces ra.service"},
		{name: "three units", unit: "a.service", reqs: reqs("c.service"),
			others: map[string]Requirements{"b.service": reqs("a.service"), "c.service": reqs("b.service")},
			want:   "a.service replaces c.service, c.service replaces b.service, b.service replaces a.service"},
		{name: "a chain", unit: "a.service", reqs: reqs("b.service"),
			others: map[string]Requirements{"b.service": reqs("c.service"), "c.service": reqs("d.service")}},
		{name: "the old version of the unit does not count", unit: "a.service", reqs: reqs("b.service"),
			others: map[string]Requirements{"a.service": reqs("x"), "b.service": reqs("c.service")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReplacesCycle(tc.unit, tc.reqs, tc.others); got != tc.want {
				t.Errorf("ReplacesCycle = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReplacesOf(t *testing.T) {
	units := []Unit{
		{Name: "a.service", Content: "[X-Fleet]\nReplaces=%p-old.service\n"},
		{Name: "b.service", Content: "[Service]\nExecStart=/bin/true\n"},
		{Name: "c.service", Content: "[Service]\nExecStart=/bin/echo Replaces\n"},
	}
	got := ReplacesOf(units)
	if len(got) != 1 || len(got["a.service"].Replaces) != 1 || got["a.service"].Replaces[0] != "a-old.service" {
		t.Errorf("ReplacesOf = %+v, want only a.service replacing a-old.service", got)
	}
}
