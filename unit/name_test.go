package unit

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		unit    string
		wantErr string // "" = valid
	}{
		{name: "service", unit: "hello.service"},
		{name: "every allowed character", unit: `aZ0:-_.\@x.service`},
		{name: "template", unit: "foo@.service"},
		{name: "instance", unit: "foo@bar.timer"},
		{name: "target", unit: "multi-user.target"},
		{name: "longest name", unit: strings.Repeat("a", 240-len(".mount")) + ".mount"},
		{name: "dots inside", unit: "a..b.service"},
		{name: "root-like but not reserved", unit: "-.target"},
		{name: "every unit type", unit: "a.automount"},
		{name: "empty", unit: "", wantErr: "unit name cannot be empty"},
		{name: "too long for the agent's temporary file", unit: strings.Repeat("a", 241-len(".service")) + ".service",
			wantErr: "unit name exceeds maximum length (240)"},
		{name: "longest fleet name", unit: strings.Repeat("a", 256-len(".service")) + ".service",
			wantErr: "unit name exceeds maximum length (240)"},
		{name: "too long is checked before the dot", unit: strings.Repeat("a", 300), wantErr: "unit name exceeds maximum length (240)"},
		{name: "only a type", unit: ".service", wantErr: `unit name cannot start in ".": systemd ignores hidden unit files`},
		{name: "leading dot", unit: "..service", wantErr: `unit name cannot start in ".": systemd ignores hidden unit files`},
		{name: "hidden", unit: ".hidden.timer", wantErr: `unit name cannot start in ".": systemd ignores hidden unit files`},
		{name: "snapshot", unit: "x.snapshot", wantErr: `unsupported unit type "snapshot": systemd removed snapshot units in version 228`},
		{name: "busname", unit: "x.busname", wantErr: `unsupported unit type "busname": systemd removed busname units in version 230`},
		{name: "scope", unit: "x.scope",
			wantErr: `unsupported unit type "scope": systemd creates scope units only through its API, never from a unit file`},
		{name: "root mount", unit: "-.mount", wantErr: `unit name "-.mount" is reserved: systemd manages that unit itself`},
		{name: "root slice", unit: "-.slice", wantErr: `unit name "-.slice" is reserved: systemd manages that unit itself`},
		{name: "fleet's checks come first", unit: ".x@y.mount", wantErr: `invalid unit type for template: "mount"`},
		{name: "no dot", unit: "hello", wantErr: `unit name must contain "."`},
		{name: "ends in dot", unit: "hello.", wantErr: `unit name cannot end in "."`},
		{name: "unknown type", unit: "hello.conf", wantErr: `invalid unit type: "conf"`},
		{name: "type is after the last dot", unit: "hello.service.bak", wantErr: `invalid unit type: "bak"`},
		{name: "type is case-sensitive", unit: "hello.Service", wantErr: `invalid unit type: "Service"`},
		{name: "template of a non-template type", unit: "foo@bar.mount", wantErr: `invalid unit type for template: "mount"`},
		{name: "template check before characters", unit: "f o@.device", wantErr: `invalid unit type for template: "device"`},
		{name: "space", unit: "hello world.service", wantErr: `invalid character ' ' in unit name`},
		{name: "slash", unit: "a/b.service", wantErr: `invalid character '/' in unit name`},
		{name: "non-ASCII letter", unit: "héllo.service", wantErr: `invalid character 'é' in unit name`},
		{name: "first bad character reported", unit: "a%b!.service", wantErr: `invalid character '%' in unit name`},
		{name: "starts with at", unit: "@foo.service", wantErr: `unit name cannot start in "@"`},
		{name: "characters before leading at", unit: "@f!.service", wantErr: `invalid character '!' in unit name`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateName(tc.unit)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ValidateName(%q) = %q, want nil", tc.unit, err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("ValidateName(%q) = nil, want %q", tc.unit, tc.wantErr)
			case tc.wantErr != "" && err.Error() != tc.wantErr:
				t.Fatalf("ValidateName(%q) = %q, want %q", tc.unit, err, tc.wantErr)
			}
		})
	}
}

func TestValidateNameUnitTypes(t *testing.T) {
	types := []struct {
		typ      string
		valid    bool // systemd 252 loads it from a unit file
		template bool
	}{
		{"automount", true, false}, {"busname", false, false}, {"device", true, false}, {"mount", true, false},
		{"path", true, true}, {"scope", false, false}, {"service", true, true}, {"slice", true, false},
		{"snapshot", false, false}, {"socket", true, true}, {"swap", true, false}, {"target", true, true}, {"timer", true, true},
	}
	for _, tc := range types {
		t.Run(tc.typ, func(t *testing.T) {
			if err := ValidateName("x." + tc.typ); (err == nil) != tc.valid {
				t.Fatalf("ValidateName(x.%s) = %v, want valid: %v", tc.typ, err, tc.valid)
			}
			err := ValidateName("x@y." + tc.typ)
			if (err == nil) != tc.template {
				t.Fatalf("ValidateName(x@y.%s) = %v, want valid: %v", tc.typ, err, tc.template)
			}
			// fleet's types keep their suffix, so that the ones systemd
			// dropped are refused by name.
			if got := MangleName("x." + tc.typ); got != "x."+tc.typ {
				t.Fatalf("MangleName(x.%s) = %q", tc.typ, got)
			}
		})
	}
}

// TestLongestNameFitsTheAgentsTemporaryFile creates the largest temporary
// file name the agent can make for the longest valid name (see
// systemd.WriteUnitFile: os.CreateTemp(dir, "."+name+".tmp*")), and checks
// that one byte more is refused by the file system.
func TestLongestNameFitsTheAgentsTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	longest := strings.Repeat("a", maxNameLen-len(".service")) + ".service"
	if err := ValidateName(longest); err != nil {
		t.Fatalf("ValidateName(longest) = %v", err)
	}
	tmp := "." + longest + ".tmp" + strconv.FormatUint(math.MaxUint32, 10)
	f, err := os.Create(filepath.Join(dir, tmp))
	if err != nil {
		t.Fatalf("the agent's temporary file for a %d-byte name: %v", len(longest), err)
	}
	f.Close()
	if err := os.Rename(filepath.Join(dir, tmp), filepath.Join(dir, longest)); err != nil {
		t.Fatal(err)
	}
	tooLong := "a" + longest
	if ValidateName(tooLong) == nil {
		t.Fatalf("ValidateName accepted a %d-byte name", len(tooLong))
	}
	_, err = os.Create(filepath.Join(dir, "."+tooLong+".tmp"+strconv.FormatUint(math.MaxUint32, 10)))
	if !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("creating the temporary file of a %d-byte name: %v, want ENAMETOOLONG", len(tooLong), err)
	}
}

func TestMangleName(t *testing.T) {
	tests := []struct {
		name, arg, want string
	}{
		{name: "bare name", arg: "hello", want: "hello.service"},
		{name: "service", arg: "hello.service", want: "hello.service"},
		{name: "target stays target", arg: "foo.target", want: "foo.target"},
		{name: "socket", arg: "foo.socket", want: "foo.socket"},
		{name: "path to a file", arg: "/path/to/x.service", want: "x.service"},
		{name: "relative path", arg: "units/web@1.service", want: "web@1.service"},
		{name: "instance without type", arg: "foo@bar", want: "foo@bar.service"},
		{name: "unknown suffix", arg: "foo.conf", want: "foo.conf.service"},
		{name: "trailing slash", arg: "dir/foo/", want: "foo.service"},
		{name: "empty", arg: "", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := MangleName(tc.arg); got != tc.want {
				t.Fatalf("MangleName(%q) = %q, want %q", tc.arg, got, tc.want)
			}
		})
	}
}

func TestParseName(t *testing.T) {
	tests := []struct {
		name     string
		unit     string
		want     Name
		stem     string
		template bool
		instance bool
		tmpl     string
	}{
		{
			name: "plain", unit: "hello.service",
			want: Name{Full: "hello.service", Prefix: "hello", Type: "service"}, stem: "hello",
		},
		{
			name: "template", unit: "foo@.service",
			want: Name{Full: "foo@.service", Prefix: "foo", Type: "service"}, stem: "foo@", template: true,
		},
		{
			name: "instance", unit: "foo@bar.service",
			want: Name{Full: "foo@bar.service", Prefix: "foo", Instance: "bar", Type: "service"},
			stem: "foo@bar", instance: true, tmpl: "foo@.service",
		},
		{
			name: "instance with dots and ats", unit: "a.b@c@d.e.timer",
			want: Name{Full: "a.b@c@d.e.timer", Prefix: "a.b", Instance: "c@d.e", Type: "timer"},
			stem: "a.b@c@d.e", instance: true, tmpl: "a.b@.timer",
		},
		{
			name: "no type", unit: "foo@bar",
			want: Name{Full: "foo@bar", Prefix: "foo", Instance: "bar"}, stem: "foo@bar", instance: true, tmpl: "foo@",
		},
		{
			name: "empty", unit: "", want: Name{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := ParseName(tc.unit)
			if n != tc.want {
				t.Fatalf("ParseName(%q) = %+v, want %+v", tc.unit, n, tc.want)
			}
			if got := n.Stem(); got != tc.stem {
				t.Errorf("Stem = %q, want %q", got, tc.stem)
			}
			if got := n.IsTemplate(); got != tc.template {
				t.Errorf("IsTemplate = %v, want %v", got, tc.template)
			}
			if got := n.IsInstance(); got != tc.instance {
				t.Errorf("IsInstance = %v, want %v", got, tc.instance)
			}
			if got := n.Template(); got != tc.tmpl {
				t.Errorf("Template = %q, want %q", got, tc.tmpl)
			}
		})
	}
}

func TestExpandSpecifiers(t *testing.T) {
	n := ParseName("web@8080.service")
	tests := []struct {
		name, in, want string
	}{
		{name: "full name", in: "%n", want: "web@8080.service"},
		{name: "name without type", in: "%N", want: "web@8080"},
		{name: "prefix", in: "%p", want: "web"},
		{name: "instance", in: "%i", want: "8080"},
		{name: "several", in: "%p-%i.%n", want: "web-8080.web@8080.service"},
		{name: "unknown specifier kept", in: "%u %H %", want: "%u %H %"},
		{name: "double percent is not an escape", in: "%%i", want: "%8080"},
		{name: "no percent", in: "plain", want: "plain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := n.expand(tc.in); got != tc.want {
				t.Fatalf("expand(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
