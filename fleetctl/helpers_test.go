package fleetctl

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fleet-next/fleet/api"
)

func TestHeaderMux(t *testing.T) {
	tests := []struct {
		name   string
		writes func(a, b *headerWriter) error
		want   string
	}{
		{
			name: "one machine after the other",
			writes: func(a, b *headerWriter) error {
				return errors.Join(writeAll(a, "a1\na2\n"), a.flush(true), writeAll(b, "b1\n"), b.flush(true))
			},
			want: "==> machine A <==\na1\na2\n\n==> machine B <==\nb1\n",
		},
		{
			name: "interleaved lines repeat headers, partial lines wait",
			writes: func(a, b *headerWriter) error {
				return errors.Join(writeAll(a, "a1\na"), writeAll(b, "b1\n"), writeAll(a, "2\n"), a.flush(false), b.flush(false))
			},
			want: "==> machine A <==\na1\n\n==> machine B <==\nb1\n\n==> machine A <==\na2\n",
		},
		{
			name: "a last line without newline gets one",
			writes: func(a, b *headerWriter) error {
				return errors.Join(writeAll(a, "a1"), a.flush(false))
			},
			want: "==> machine A <==\na1\n",
		},
		{
			name: "a machine that sent nothing gets its header when asked",
			writes: func(a, b *headerWriter) error {
				return errors.Join(a.flush(true), writeAll(b, "b1\n"), b.flush(true))
			},
			want: "==> machine A <==\n\n==> machine B <==\nb1\n",
		},
		{
			name: "or nothing",
			writes: func(a, b *headerWriter) error {
				return errors.Join(a.flush(false), writeAll(b, "b1\n"), b.flush(false))
			},
			want: "==> machine B <==\nb1\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			mux := &headerMux{w: &out}
			if err := tc.writes(mux.writer("A"), mux.writer("B")); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("got %q, want %q", out.String(), tc.want)
			}
		})
	}
}

func writeAll(w *headerWriter, s string) error {
	_, err := w.Write([]byte(s))
	return err
}

func TestShellQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/var/run/fleet.sock", "/var/run/fleet.sock"},
		{"/tmp/with space/fleet.sock", "'/tmp/with space/fleet.sock'"},
		{"/tmp/it's", `'/tmp/it'\''s'`},
		{"", "''"},
		{"$(reboot)", "'$(reboot)'"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := shellQuote(tc.in); got != tc.want {
				t.Errorf("shellQuote(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSSHAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"bastion.example.com", "bastion.example.com:22"},
		{"bastion.example.com:2222", "bastion.example.com:2222"},
		{"10.0.0.1", "10.0.0.1:22"},
		{"[::1]", "[::1]:22"},
		{"[::1]:2200", "[::1]:2200"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := sshAddr(tc.in); got != tc.want {
				t.Errorf("sshAddr(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestExpandHome(t *testing.T) {
	env := func(k string) string {
		if k == "HOME" {
			return "/home/core"
		}
		return ""
	}
	tests := []struct{ in, want string }{
		{"~/.fleetctl/known_hosts", "/home/core/.fleetctl/known_hosts"},
		{"/etc/fleet/known_hosts", "/etc/fleet/known_hosts"},
		{"~other/known_hosts", "~other/known_hosts"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := expandHome(tc.in, env); got != tc.want {
				t.Errorf("expandHome(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseDriver(t *testing.T) {
	tests := []struct {
		in      string
		want    driver
		wantErr string
	}{
		{in: "API", want: driverAPI},
		{in: "api", want: driverAPI},
		{in: "etcd", want: driverEtcd},
		{in: "ETCD", want: driverEtcd},
		{in: "", wantErr: `unrecognized driver ""`},
		{in: "grpc", wantErr: `unrecognized driver "grpc"`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseDriver(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("parseDriver(%q) error = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("parseDriver(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestTrimToDashes(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{name: "no dashes", in: []string{"ls", "-l"}, want: "ls -l"},
		{name: "after dashes", in: []string{"x", "--", "ls", "-l"}, want: "ls -l"},
		{name: "only the first dashes count", in: []string{"--", "echo", "--"}, want: "echo --"},
		{name: "nothing", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(trimToDashes(tc.in), " "); got != tc.want {
				t.Errorf("trimToDashes(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMachineByPrefix(t *testing.T) {
	machines := []*api.Machine{{ID: "aaaa1111"}, {ID: "aaab2222"}, nil, {ID: "bbbb3333"}}
	tests := []struct {
		prefix  string
		want    string // "" for none
		wantErr bool
	}{
		{prefix: "b", want: "bbbb3333"},
		{prefix: "aaaa", want: "aaaa1111"},
		{prefix: "aaa", wantErr: true},
		{prefix: "c"},
		{prefix: "aaaa1111", want: "aaaa1111"},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			m, err := machineByPrefix(machines, tc.prefix)
			got := ""
			if m != nil {
				got = m.ID
			}
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("machineByPrefix(%q) = %q, %v; want %q, error %v", tc.prefix, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestWriteStructured(t *testing.T) {
	type doc struct {
		Name  string            `json:"name"`
		Count int               `json:"count,omitempty"`
		Tags  map[string]string `json:"tags,omitempty"`
	}
	docs := []doc{{Name: "a", Count: 2, Tags: map[string]string{"z": "1", "b": "yes"}}, {Name: "b"}}
	tests := []struct {
		name   string
		format outputFormat
		v      any
		want   string
	}{
		{name: "json", format: outputJSON, v: docs, want: `[
  {
    "name": "a",
    "count": 2,
    "tags": {
      "b": "yes",
      "z": "1"
    }
  },
  {
    "name": "b"
  }
]
`},
		{name: "yaml quotes what would not read back as a string", format: outputYAML, v: docs,
			want: "- count: 2\n  name: a\n  tags:\n    b: \"yes\"\n    z: \"1\"\n- name: b\n"},
		{name: "empty json list", format: outputJSON, v: []doc{}, want: "[]\n"},
		{name: "empty yaml list", format: outputYAML, v: []doc{}, want: "[]\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeStructured(&b, tc.format, tc.v); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got %q, want %q", b.String(), tc.want)
			}
		})
	}
}

func TestOutputValue(t *testing.T) {
	tests := []struct {
		in      string
		want    outputFormat
		wantErr bool
	}{
		{in: "text", want: outputText},
		{in: "table", want: outputText},
		{in: "json", want: outputJSON},
		{in: "yaml", want: outputYAML},
		{in: "JSON", wantErr: true},
		{in: "xml", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			f := outputYAML
			err := outputValue{&f}.Set(tc.in)
			if (err != nil) != tc.wantErr || !tc.wantErr && f != tc.want {
				t.Errorf("Set(%q) = %v, %v; want %v, error %v", tc.in, f, err, tc.want, tc.wantErr)
			}
		})
	}
}
