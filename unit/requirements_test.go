package unit

import (
	"errors"
	"path"
	"reflect"
	"slices"
	"testing"
)

// fleetFile parses an [X-Fleet] section body.
func fleetFile(t *testing.T, body string) *File {
	t.Helper()
	f, err := Parse("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n" + body)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

func TestRequirements(t *testing.T) {
	tests := []struct {
		name string
		body string
		unit string
		want Requirements
	}{
		{name: "none", body: "", want: Requirements{}},
		{name: "MachineID", body: "MachineID=abc\n", want: Requirements{MachineID: "abc"}},
		{name: "first MachineID wins", body: "MachineID=abc\nMachineID=def\n", want: Requirements{MachineID: "abc"}},
		{
			name: "MachineID beats deprecated aliases in any order",
			body: "X-ConditionMachineBootID=boot\nX-ConditionMachineID=old\nMachineID=new\n",
			want: Requirements{MachineID: "new"},
		},
		{name: "X-ConditionMachineID", body: "X-ConditionMachineBootID=boot\nX-ConditionMachineID=old\n", want: Requirements{MachineID: "old"}},
		{name: "X-ConditionMachineBootID", body: "X-ConditionMachineBootID=boot\n", want: Requirements{MachineID: "boot"}},
		{
			name: "MachineOf and its alias accumulate",
			body: "MachineOf=a.service\nX-ConditionMachineOf=b.service\nMachineOf=c.service\n",
			want: Requirements{MachineOf: []string{"a.service", "b.service", "c.service"}},
		},
		{
			name: "MachineMetadata OR within key",
			body: "MachineMetadata=region=us-east\nMachineMetadata=region=us-west\nX-ConditionMachineMetadata=disk=ssd\n",
			want: Requirements{Metadata: map[string][]string{"region": {"us-east", "us-west"}, "disk": {"ssd"}}},
		},
		{
			name: "metadata value may contain equals",
			body: "MachineMetadata=opts=a=b\n",
			want: Requirements{Metadata: map[string][]string{"opts": {"a=b"}}},
		},
		{
			name: "duplicate metadata values collapse",
			body: "MachineMetadata=role=web\nMachineMetadata=role=web\n",
			want: Requirements{Metadata: map[string][]string{"role": {"web"}}},
		},
		{
			name: "malformed metadata left out",
			body: "MachineMetadata=role\nMachineMetadata==web\nMachineMetadata=role=\nMachineMetadata=ok=1\n",
			want: Requirements{Metadata: map[string][]string{"ok": {"1"}}},
		},
		{
			name: "quoted multi-values",
			body: `MachineMetadata="region=us-east" "disk=ssd"` + "\n",
			want: Requirements{Metadata: map[string][]string{"region": {"us-east"}, "disk": {"ssd"}}},
		},
		{
			name: "quoted values keep inner spaces",
			body: `MachineOf="a b.service" c.service"` + "\n",
			want: Requirements{MachineOf: []string{"a b.service", "c.service"}},
		},
		{
			name: "repeated spaces give no empty values",
			body: `MachineOf="a.service"   "b.service"` + "\n",
			want: Requirements{MachineOf: []string{"a.service", "b.service"}},
		},
		{
			name: "unbalanced quotes are one value",
			body: `MachineOf="a.service b.service` + "\n",
			want: Requirements{MachineOf: []string{`"a.service b.service`}},
		},
		{
			name: "Conflicts split on whitespace, both spellings",
			body: "Conflicts=a.service  b*.service\nX-Conflicts=c.service\nConflicts=d@*.service\n",
			want: Requirements{Conflicts: []string{"a.service", "b*.service", "c.service", "d@*.service"}},
		},
		{
			name: "Replaces not split on whitespace",
			body: "Replaces=a.service b.service\nReplaces=c.service\n",
			want: Requirements{Replaces: []string{"a.service b.service", "c.service"}},
		},
		{name: "Global", body: "Global=true\n", want: Requirements{Global: true}},
		{name: "last Global wins", body: "Global=true\nGlobal=false\n", want: Requirements{Global: false}},
		{name: "last quoted Global wins", body: `Global="no" "yes"` + "\n", want: Requirements{Global: true}},
		{name: "unknown keys ignored", body: "Foo=bar\nmachineid=lowercase\n", want: Requirements{}},
		{
			name: "specifiers substituted from the unit name",
			body: "MachineOf=%p-sidekick@%i.service\nConflicts=%p@*.service %N-x.service\nMachineMetadata=%p=%i\nReplaces=old-%n\nMachineID=%i\n",
			unit: "web@8080.service",
			want: Requirements{
				MachineID: "8080",
				MachineOf: []string{"web-sidekick@8080.service"},
				Metadata:  map[string][]string{"web": {"8080"}},
				Conflicts: []string{"web@*.service", "web@8080-x.service"},
				Replaces:  []string{"old-web@8080.service"},
			},
		},
		{
			name: "specifiers of a plain name",
			body: "MachineOf=%p-%i.%N\n",
			unit: "db.service",
			want: Requirements{MachineOf: []string{"db-.db"}},
		},
		{
			name: "no substitution without a name",
			body: "MachineOf=%p.service\n",
			want: Requirements{MachineOf: []string{"%p.service"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := fleetFile(t, tc.body).Requirements(tc.unit)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Requirements(%q) = %+v, want %+v", tc.unit, got, tc.want)
			}
		})
	}
}

func TestRequirementsOnlyFromXFleet(t *testing.T) {
	f, err := Parse("[Unit]\nConflicts=other.service\n[Service]\nMachineID=abc\n[X-Fleet]\nGlobal=true\n")
	if err != nil {
		t.Fatal(err)
	}
	want := Requirements{Global: true}
	if got := f.Requirements(""); !reflect.DeepEqual(got, want) {
		t.Fatalf("Requirements = %+v, want %+v", got, want)
	}
}

func TestGlobal(t *testing.T) {
	tests := []struct {
		value string
		want  bool
	}{
		{"true", true}, {"TRUE", true}, {"True", true}, {"yes", true}, {"YES", true},
		{"1", true}, {"on", true}, {"On", true}, {"t", true}, {"T", true},
		{"false", false}, {"no", false}, {"0", false}, {"off", false}, {"y", false},
		{"", false}, {"truee", false}, {" true", true}, // value is trimmed by the parser
	}
	for _, tc := range tests {
		t.Run("value "+tc.value, func(t *testing.T) {
			f := fleetFile(t, "Global="+tc.value+"\n")
			if got := f.IsGlobal(); got != tc.want {
				t.Fatalf("IsGlobal(Global=%q) = %v, want %v", tc.value, got, tc.want)
			}
			if got := f.Requirements("").Global; got != tc.want {
				t.Fatalf("Requirements.Global(Global=%q) = %v, want %v", tc.value, got, tc.want)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{name: "all known keys", body: "MachineID=a\nMachineOf=b\nMachineMetadata=c=d\nConflicts=e\nGlobal=f\nReplaces=g\n" +
			"X-ConditionMachineID=h\nX-ConditionMachineBootID=i\nX-ConditionMachineOf=j\nX-Conflicts=k\nX-ConditionMachineMetadata=l=m\n"},
		{
			name: "unknown keys once each in file order",
			body: "Foo=1\nGlobal=true\nBar=2\nFoo=3\nmachineID=x\n",
			want: []string{
				`unrecognized requirement in [X-Fleet] section: "Foo"`,
				`unrecognized requirement in [X-Fleet] section: "Bar"`,
				`unrecognized requirement in [X-Fleet] section: "machineID"`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fleetFile(t, tc.body).Warnings(); !slices.Equal(got, tc.want) {
				t.Fatalf("Warnings = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr string
		badGlob bool // the error wraps path.ErrBadPattern
	}{
		{name: "nothing", body: ""},
		{name: "global with metadata and conflicts", body: "Global=true\nMachineMetadata=a=b\nConflicts=x.service\n"},
		{name: "machine ID with metadata", body: "MachineID=abc\nMachineMetadata=a=b\n"},
		{name: "peers and conflicts that do not overlap", body: "MachineOf=a.service\nConflicts=b*.service\n"},
		{name: "global false does not conflict", body: "Global=false\nMachineOf=a.service\n"},
		{name: "specifiers are not substituted", body: "MachineOf=%p.service\nConflicts=web.service\n"},
		{name: "MachineID with Peers", body: "MachineID=abc\nMachineOf=a.service\n", wantErr: "MachineID cannot be used with Peers"},
		{name: "deprecated MachineID with Peers", body: "X-ConditionMachineBootID=abc\nX-ConditionMachineOf=a.service\n", wantErr: "MachineID cannot be used with Peers"},
		{name: "MachineID with Conflicts", body: "MachineID=abc\nConflicts=a.service\n", wantErr: "MachineID cannot be used with Conflicts"},
		{name: "MachineID with X-Conflicts", body: "X-ConditionMachineID=abc\nX-Conflicts=a.service\n", wantErr: "MachineID cannot be used with Conflicts"},
		{name: "MachineID with Global", body: "MachineID=abc\nGlobal=yes\n", wantErr: "MachineID cannot be used with Global"},
		{name: "MachineID with Replaces", body: "MachineID=abc\nReplaces=a.service\n", wantErr: "MachineID cannot be used with Replaces"},
		{name: "Global with Peers", body: "Global=true\nMachineOf=a.service\n", wantErr: "Global cannot be used with Peers"},
		{name: "Global with Replaces", body: "Global=true\nReplaces=a.service\n", wantErr: "Global cannot be used with Replaces"},
		{name: "Conflicts with Replaces", body: "Conflicts=a.service\nReplaces=b.service\n", wantErr: "Conflicts cannot be used with Replaces"},
		{
			name:    "peer matches conflict",
			body:    "MachineOf=web@1.service\nConflicts=db.service web@*.service\n",
			wantErr: `unresolvable requirements: peer "web@1.service" matches conflict "web@*.service"`,
		},
		{
			name:    "peer matches replace",
			body:    "MachineOf=web@1.service\nReplaces=web@?.service\n",
			wantErr: `unresolvable requirements: peer "web@1.service" matches replace "web@?.service"`,
		},
		{
			name:    "unresolvable peer is reported before combinations",
			body:    "MachineID=abc\nMachineOf=a.service\nConflicts=a.service\n",
			wantErr: `unresolvable requirements: peer "a.service" matches conflict "a.service"`,
		},
		{
			name:    "first combination wins",
			body:    "MachineID=abc\nGlobal=true\nReplaces=a.service\n",
			wantErr: "MachineID cannot be used with Global",
		},
		{name: "empty MachineID", body: "MachineID=\n", wantErr: "MachineID cannot be empty"},
		{name: "empty MachineID still counts as a target", body: "MachineID=\nGlobal=true\n", wantErr: "MachineID cannot be used with Global"},
		{name: "metadata without equals", body: "MachineMetadata=role\n", wantErr: `invalid MachineMetadata value "role": want key=value`},
		{name: "metadata without key", body: "X-ConditionMachineMetadata==web\n", wantErr: `invalid MachineMetadata value "=web": want key=value`},
		{name: "metadata without value", body: `MachineMetadata="a=b" "role="` + "\n", wantErr: `invalid MachineMetadata value "role=": want key=value`},
		{name: "bad Conflicts glob", body: "Conflicts=web[.service\n", wantErr: `invalid Conflicts pattern "web[.service": syntax error in pattern`, badGlob: true},
		{name: "bad Replaces glob", body: `Replaces=web\` + "x[\n", wantErr: `invalid Replaces pattern "web\\x[": syntax error in pattern`, badGlob: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := fleetFile(t, tc.body).Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate = %q, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Validate = nil, want %q", tc.wantErr)
			case tc.wantErr != "" && err.Error() != tc.wantErr:
				t.Fatalf("Validate = %q, want %q", err, tc.wantErr)
			}
			if tc.badGlob && !errors.Is(err, path.ErrBadPattern) {
				t.Fatalf("Validate = %v, want it to wrap path.ErrBadPattern", err)
			}
		})
	}
}

func TestMatchesMetadata(t *testing.T) {
	req := fleetFile(t, "MachineMetadata=region=us-east\nMachineMetadata=region=us-west\nMachineMetadata=disk=ssd\n").Requirements("")
	tests := []struct {
		name string
		req  Requirements
		md   map[string]string
		want bool
	}{
		{name: "first value of key", req: req, md: map[string]string{"region": "us-east", "disk": "ssd"}, want: true},
		{name: "second value of key", req: req, md: map[string]string{"region": "us-west", "disk": "ssd", "extra": "x"}, want: true},
		{name: "one key fails", req: req, md: map[string]string{"region": "us-west", "disk": "hdd"}, want: false},
		{name: "value not listed", req: req, md: map[string]string{"region": "eu", "disk": "ssd"}, want: false},
		{name: "missing key", req: req, md: map[string]string{"region": "us-east"}, want: false},
		{name: "no metadata at all", req: req, md: nil, want: false},
		{name: "no requirement matches anything", req: Requirements{}, md: nil, want: true},
		{name: "values are case-sensitive", req: req, md: map[string]string{"region": "US-EAST", "disk": "ssd"}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.req.MatchesMetadata(tc.md); got != tc.want {
				t.Fatalf("MatchesMetadata(%v) = %v, want %v", tc.md, got, tc.want)
			}
		})
	}
}

func TestConflictsWith(t *testing.T) {
	reqs := func(body string) Requirements { return fleetFile(t, body).Requirements("") }
	tests := []struct {
		name         string
		aName, bName string
		a, b         Requirements
		want         bool
	}{
		{name: "none", aName: "a.service", bName: "b.service", want: false},
		{name: "a names b", aName: "a.service", a: reqs("Conflicts=b.service\n"), bName: "b.service", want: true},
		{name: "b names a", aName: "a.service", bName: "b.service", b: reqs("Conflicts=a.service\n"), want: true},
		{name: "glob in a", aName: "web@1.service", a: reqs("Conflicts=web@*.service\n"), bName: "web@2.service", want: true},
		{name: "glob misses", aName: "web@1.service", a: reqs("Conflicts=web@*.service\n"), bName: "db.service", want: false},
		{name: "second glob of a line", aName: "a.service", a: reqs("Conflicts=x.service  b?.service\n"), bName: "b1.service", want: true},
		{name: "glob on a later line", aName: "a.service", a: reqs("Conflicts=x.service\nX-Conflicts=y.service\nConflicts=*.socket\n"), bName: "b.socket", want: true},
		{name: "bad glob never matches", aName: "a.service", a: reqs("Conflicts=b[.service\n"), bName: "b[.service", want: false},
		{name: "star does not cross slash", aName: "a.service", a: reqs("Conflicts=*\n"), bName: "x/b.service", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ConflictsWith(tc.aName, tc.a, tc.bName, tc.b); got != tc.want {
				t.Fatalf("ConflictsWith = %v, want %v", got, tc.want)
			}
			if got := ConflictsWith(tc.bName, tc.b, tc.aName, tc.a); got != tc.want {
				t.Fatalf("ConflictsWith swapped = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReplacesUnit(t *testing.T) {
	req := fleetFile(t, "Replaces=old.service\nReplaces=legacy-*.service\n").Requirements("")
	tests := []struct {
		name, unit string
		want       bool
	}{
		{name: "literal", unit: "old.service", want: true},
		{name: "glob", unit: "legacy-db.service", want: true},
		{name: "no match", unit: "new.service", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := req.ReplacesUnit(tc.unit); got != tc.want {
				t.Fatalf("ReplacesUnit(%q) = %v, want %v", tc.unit, got, tc.want)
			}
		})
	}
}

func TestMatchMachineID(t *testing.T) {
	const id = "113f16a7fbe2422e8d3d7fc0a54e2b8f"
	tests := []struct {
		name, want, machine string
		match               bool
	}{
		{name: "full ID", want: id, machine: id, match: true},
		{name: "short ID", want: id[:8], machine: id, match: true},
		{name: "other prefix length", want: id[:7], machine: id, match: false},
		{name: "other machine", want: "deadbeef", machine: id, match: false},
		{name: "short machine ID", want: "abc", machine: "abc", match: true},
		{name: "empty want", want: "", machine: id, match: false},
		{name: "empty want and machine", want: "", machine: "", match: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := MatchMachineID(tc.want, tc.machine); got != tc.match {
				t.Fatalf("MatchMachineID(%q, %q) = %v, want %v", tc.want, tc.machine, got, tc.match)
			}
		})
	}
}

func TestReqKeyString(t *testing.T) {
	names := []string{"MachineID", "X-ConditionMachineID", "X-ConditionMachineBootID", "MachineOf",
		"X-ConditionMachineOf", "MachineMetadata", "X-ConditionMachineMetadata", "Conflicts", "X-Conflicts",
		"Global", "Replaces"}
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			k := parseReqKey(n)
			if k == keyUnknown || k.String() != n {
				t.Fatalf("parseReqKey(%q) = %v", n, k)
			}
		})
	}
	if got := parseReqKey("Nope").String(); got != "unknown" {
		t.Fatalf("unknown key String = %q", got)
	}
}
