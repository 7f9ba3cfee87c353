package fleetctl

import (
	"bytes"
	"slices"
	"testing"

	"github.com/fleet-next/fleet/registry/registrytest"
)

func TestLocalPaths(t *testing.T) {
	tests := []struct {
		name, arg, unit string
		want            []string
	}{
		{name: "full file name", arg: "hello.service", unit: "hello.service", want: []string{"hello.service"}},
		{name: "bare name", arg: "hello", unit: "hello.service", want: []string{"hello", "hello.service"}},
		{name: "path with file name", arg: "units/web.socket", unit: "web.socket", want: []string{"units/web.socket"}},
		{name: "path with bare name", arg: "units/web", unit: "web.service",
			want: []string{"units/web", "units/web.service"}},
		{name: "absolute instance", arg: "/srv/app@1", unit: "app@1.service",
			want: []string{"/srv/app@1", "/srv/app@1.service"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := localPaths(tc.arg, tc.unit); !slices.Equal(got, tc.want) {
				t.Errorf("localPaths(%q, %q) = %q, want %q", tc.arg, tc.unit, got, tc.want)
			}
		})
	}
}

// TestResolveLookupOrder checks where unit contents come from: the
// registry, then a local file, then for instances the template from the
// registry, then a local template file.
func TestResolveLookupOrder(t *testing.T) {
	const (
		localText    = "[Service]\nExecStart=/bin/local\n"
		registryText = "[Service]\nExecStart=/bin/registry\n"
		templateText = "[Service]\nExecStart=/bin/template %i\n"
	)
	tests := []struct {
		name       string
		registry   map[string]string // unit name → contents
		files      map[string]string
		args       []string
		pol        createPolicy
		wantNames  []string
		wantExec   []string // ExecStart of each resolved unit
		wantCreate []bool
		wantErr    string
	}{
		{
			name: "registry before local file", registry: map[string]string{"hello.service": registryText},
			files: map[string]string{"hello.service": registryText}, args: []string{"hello.service"},
			wantNames: []string{"hello.service"}, wantExec: []string{"/bin/registry"}, wantCreate: []bool{false},
		},
		{
			name: "local file at the argument path", files: map[string]string{"units/web.service": localText},
			args: []string{"units/web.service"}, pol: createPolicy{desired: stateLoaded},
			wantNames: []string{"web.service"}, wantExec: []string{"/bin/local"}, wantCreate: []bool{true},
		},
		{
			name: "mangled name next to the argument", files: map[string]string{"units/web.service": localText},
			args:      []string{"units/web"},
			wantNames: []string{"web.service"}, wantExec: []string{"/bin/local"}, wantCreate: []bool{true},
		},
		{
			name:      "instance file before its template",
			registry:  map[string]string{"app@.service": templateText},
			files:     map[string]string{"app@1.service": localText},
			args:      []string{"app@1.service"},
			wantNames: []string{"app@1.service"}, wantExec: []string{"/bin/local"}, wantCreate: []bool{true},
		},
		{
			name:      "registry template before local template",
			registry:  map[string]string{"app@.service": templateText},
			files:     map[string]string{"app@.service": localText},
			args:      []string{"app@1"},
			wantNames: []string{"app@1.service"}, wantExec: []string{"/bin/template %i"}, wantCreate: []bool{true},
		},
		{
			name:      "local template next to the argument",
			files:     map[string]string{"units/app@.service": templateText},
			args:      []string{"units/app@2.service", "units/app@3"},
			wantNames: []string{"app@2.service", "app@3.service"},
			wantExec:  []string{"/bin/template %i", "/bin/template %i"}, wantCreate: []bool{true, true},
		},
		{
			name: "duplicates collapse", files: map[string]string{"hello.service": localText},
			args:      []string{"hello", "hello.service", "./hello.service"},
			wantNames: []string{"hello.service"}, wantExec: []string{"/bin/local"}, wantCreate: []bool{true},
		},
		{
			name: "unit not found", args: []string{"nope"},
			wantErr: "unable to find Unit(nope.service) in Registry or on filesystem",
		},
		{
			name: "template not found", args: []string{"app@1"},
			wantErr: "unable to find template Unit(app@.service) in Registry or on filesystem",
		},
		{
			name: "template refused when activating", files: map[string]string{"app@.service": templateText},
			args: []string{"app@.service"}, pol: createPolicy{activate: true},
			wantErr: `cannot activate template "app@.service"`,
		},
		{
			name: "template accepted when submitting", files: map[string]string{"app@.service": templateText},
			args:      []string{"app@.service"},
			wantNames: []string{"app@.service"}, wantExec: []string{"/bin/template %i"}, wantCreate: []bool{true},
		},
		{
			name: "invalid name", args: []string{"@x.service"}, wantErr: `@x.service: unit name cannot start in "@"`,
		},
		{
			name: "unparsable local file", files: map[string]string{"bad.service": "[Service\nExecStart=/bin/true\n"},
			args: []string{"bad.service"}, wantErr: "unit file bad.service: ",
		},
		{
			name: "empty local file", files: map[string]string{"empty.service": "\n"},
			args: []string{"empty.service"}, wantErr: "unit file empty.service: ",
		},
	}
	e := registrytest.StartEtcd(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newSimCluster(t, e, clusterOptions{})
			for name, text := range tc.registry {
				c.addUnit(t, name, text, stateInactive)
			}
			var stdout, stderr bytes.Buffer
			r := &resolver{api: c.client(t), readFile: fakeFiles(tc.files), stdout: &stdout, stderr: &stderr}
			got, err := r.resolve(t.Context(), tc.args, tc.pol)
			if tc.wantErr != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr)) {
					t.Fatalf("resolve(%q) error = %v, want one containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve(%q): %v", tc.args, err)
			}
			var names, execs []string
			var creates []bool
			for _, r := range got {
				f, err := fileOf(r.unit)
				if err != nil {
					t.Fatalf("unit %s has unusable options: %v", r.unit.Name, err)
				}
				names = append(names, r.unit.Name)
				execs = append(execs, f.Values("Service", "ExecStart")...)
				creates = append(creates, r.create)
				if r.create && r.unit.DesiredState != tc.pol.desired {
					t.Errorf("new unit %s desired state = %q, want %q", r.unit.Name, r.unit.DesiredState, tc.pol.desired)
				}
			}
			if !slices.Equal(names, tc.wantNames) || !slices.Equal(execs, tc.wantExec) ||
				!slices.Equal(creates, tc.wantCreate) {
				t.Errorf("resolve(%q) = names %q exec %q create %v; want %q %q %v",
					tc.args, names, execs, creates, tc.wantNames, tc.wantExec, tc.wantCreate)
			}
			wantNothingCreated(t, c)
		})
	}
}
