package fleetctl

import (
	"errors"
	"strings"
	"testing"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

// Tables use text/tabwriter with tab padding and tabwidth 8: a column is as
// wide as its widest cell plus one, rounded up to a multiple of 8, and a
// cell is followed by as many tabs as it takes to reach that width.

func TestParseFields(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		valid   []string
		want    []string
		wantErr string
	}{
		{name: "default list-units", spec: defaultUnitStateFields, valid: unitStateFields,
			want: []string{"unit", "machine", "active", "sub"}},
		{name: "single key", spec: "hash", valid: unitStateFields, want: []string{"hash"}},
		{name: "repeated key kept", spec: "unit,unit", valid: unitStateFields, want: []string{"unit", "unit"}},
		{name: "empty", spec: "", valid: unitStateFields, wantErr: "Must define output format"},
		{name: "unknown key", spec: "unit,x", valid: unitStateFields, wantErr: `Invalid key in output format: "x"`},
		{name: "key of another command", spec: "dstate", valid: unitStateFields,
			wantErr: `Invalid key in output format: "dstate"`},
		{name: "trailing comma", spec: "unit,", valid: unitStateFields, wantErr: `Invalid key in output format: ""`},
		{name: "tmachine accepted", spec: "unit,tmachine", valid: unitFileFields, want: []string{"unit", "tmachine"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFields(tc.spec, tc.valid)
			if tc.wantErr != "" {
				var ee *exitError
				if !errors.As(err, &ee) || ee.msg != tc.wantErr || ee.code != ExitError {
					t.Fatalf("parseFields(%q) error = %v, want exit 1 with %q", tc.spec, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFields(%q): %v", tc.spec, err)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("parseFields(%q) = %q, want %q", tc.spec, got, tc.want)
			}
		})
	}
}

func TestMachineLegend(t *testing.T) {
	tests := []struct {
		name     string
		id, ip   string
		full     bool
		want     string
		wantIDOf string
	}{
		{name: "short with ip", id: "113f16a7cafe0001", ip: "172.17.8.103", want: "113f16a7.../172.17.8.103"},
		{name: "full with ip", id: "113f16a7cafe0001", ip: "172.17.8.103", full: true, want: "113f16a7cafe0001/172.17.8.103"},
		{name: "short without ip", id: "113f16a7cafe0001", want: "113f16a7..."},
		{name: "full without ip", id: "113f16a7cafe0001", full: true, want: "113f16a7cafe0001"},
		{name: "id shorter than 8", id: "abc", ip: "10.0.0.1", want: "abc.../10.0.0.1"},
		{name: "no machine", want: "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := machineLegend(tc.id, tc.ip, tc.full); got != tc.want {
				t.Errorf("machineLegend(%q, %q, %v) = %q, want %q", tc.id, tc.ip, tc.full, got, tc.want)
			}
		})
	}
}

func TestFormatUnits(t *testing.T) {
	const (
		m1 = "113f16a7cafe0001"
		m2 = "22222222beef0002"
		h1 = "0123456789abcdef0123456789abcdef01234567"
	)
	machines := []*api.Machine{{ID: m1, PrimaryIP: "172.17.8.103"}}
	states := []*api.UnitState{
		{Name: "hello.service", MachineID: m1, Hash: h1, SystemdLoadState: "loaded",
			SystemdActiveState: "active", SystemdSubState: "running"},
		{Name: "goodbye.service", MachineID: m2, Hash: h1, SystemdLoadState: "loaded",
			SystemdActiveState: "inactive", SystemdSubState: "dead"},
		{Name: "hello.service", MachineID: m2, SystemdActiveState: "failed"},
	}
	tests := []struct {
		name   string
		states []*api.UnitState
		fields []string
		full   bool
		legend bool
		want   string
	}{
		{
			name: "default fields sorted by unit then machine", states: states,
			fields: []string{"unit", "machine", "active", "sub"}, legend: true,
			want: "UNIT\t\tMACHINE\t\t\t\tACTIVE\t\tSUB\n" +
				"goodbye.service\t22222222...\t\t\tinactive\tdead\n" +
				"hello.service\t113f16a7.../172.17.8.103\tactive\t\trunning\n" +
				"hello.service\t22222222...\t\t\tfailed\t\t-\n",
		},
		{
			name: "no legend", states: states[:1],
			fields: []string{"unit", "active"},
			want:   "hello.service\tactive\n",
		},
		{
			name: "full machine and hash", states: states[:1],
			fields: []string{"machine", "hash"}, full: true, legend: true,
			want: "MACHINE\t\t\t\tHASH\n" +
				"113f16a7cafe0001/172.17.8.103\t" + h1 + "\n",
		},
		{
			name: "short hash and empty cells", states: states[1:],
			fields: []string{"unit", "load", "hash"}, legend: true,
			want: "UNIT\t\tLOAD\tHASH\n" +
				"goodbye.service\tloaded\t0123456\n" +
				"hello.service\t-\t-\n",
		},
		{
			name: "no states gives header only", fields: []string{"unit", "sub"}, legend: true,
			want: "UNIT\tSUB\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := formatUnits(tc.states, machines, tc.fields, tc.full, tc.legend)
			if got != tc.want {
				t.Errorf("formatUnits() =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestFormatUnitFiles(t *testing.T) {
	const m1 = "113f16a7cafe0001"
	hello := mustParse(t, "[Unit]\nDescription=Hello World\n\n[Service]\nExecStart=/bin/sleep 1000\n")
	global := mustParse(t, "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n")
	machines := []*api.Machine{{ID: m1, PrimaryIP: "10.0.0.1"}}
	units := []*api.Unit{
		{Name: "hello.service", Options: apiOptions(hello), DesiredState: "launched", CurrentState: "launched", MachineID: m1},
		{Name: "global.service", Options: apiOptions(global), DesiredState: "launched", CurrentState: "inactive"},
		{Name: "apending.service", Options: apiOptions(hello), DesiredState: "loaded", CurrentState: "inactive",
			Reason: "no machine matches MachineMetadata"},
	}
	helloHash := hello.Hash()
	globalHash := global.Hash()
	tests := []struct {
		name   string
		fields []string
		full   bool
		legend bool
		want   string
	}{
		{
			name: "default fields sorted by name", fields: []string{"unit", "hash", "dstate", "state", "target"}, legend: true,
			want: "UNIT\t\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n" +
				"apending.service\t" + helloHash.Short() + "\tloaded\t\tinactive\t-\n" +
				"global.service\t\t" + globalHash.Short() + "\tlaunched\t-\t\tglobal\n" +
				"hello.service\t\t" + helloHash.Short() + "\tlaunched\tlaunched\t113f16a7.../10.0.0.1\n",
		},
		{
			name: "reason", fields: []string{"unit", "reason"}, legend: true,
			want: "UNIT\t\t\tREASON\n" +
				"apending.service\tno machine matches MachineMetadata\n" +
				"global.service\t\t-\n" +
				"hello.service\t\t-\n",
		},
		{
			name: "global desc and full", fields: []string{"global", "desc", "tmachine", "hash"}, full: true,
			want: "false\tHello World\t-\t\t\t\t" + helloHash.String() + "\n" +
				"true\t-\t\tglobal\t\t\t\t" + globalHash.String() + "\n" +
				"false\tHello World\t113f16a7cafe0001/10.0.0.1\t" + helloHash.String() + "\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := formatUnitFiles(units, machines, tc.fields, tc.full, tc.legend)
			if got != tc.want {
				t.Errorf("formatUnitFiles() =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestFormatMachines(t *testing.T) {
	machines := []*api.Machine{
		{ID: "ffff0000aaaa1111", PrimaryIP: "10.0.0.2", Metadata: map[string]string{"region": "eu", "disk": "ssd"}},
		{ID: "0000ffffbbbb2222"},
	}
	tests := []struct {
		name   string
		fields []string
		full   bool
		legend bool
		want   string
	}{
		{
			name: "default fields sorted by id", fields: []string{"machine", "ip", "metadata"}, legend: true,
			want: "MACHINE\t\tIP\t\tMETADATA\n" +
				"0000ffff...\t-\t\t-\n" +
				"ffff0000...\t10.0.0.2\tdisk=ssd,region=eu\n",
		},
		{
			name: "full id without legend", fields: []string{"machine"}, full: true,
			want: "0000ffffbbbb2222\nffff0000aaaa1111\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := formatMachines(machines, tc.fields, tc.full, tc.legend)
			if got != tc.want {
				t.Errorf("formatMachines() =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestFormatMetadata(t *testing.T) {
	tests := []struct {
		name string
		md   map[string]string
		want string
	}{
		{name: "nil", want: "-"},
		{name: "empty", md: map[string]string{}, want: "-"},
		{name: "one", md: map[string]string{"a": "b"}, want: "a=b"},
		{name: "sorted by key", md: map[string]string{"z": "1", "a": "2", "m": "3"}, want: "a=2,m=3,z=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatMetadata(tc.md); got != tc.want {
				t.Errorf("formatMetadata(%v) = %q, want %q", tc.md, got, tc.want)
			}
		})
	}
}

func mustParse(t *testing.T, text string) *unit.File {
	t.Helper()
	f, err := unit.Parse(text)
	if err != nil {
		t.Fatalf("parse unit: %v", err)
	}
	return f
}
