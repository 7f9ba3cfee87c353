package systemd

import (
	"slices"
	"testing"

	"github.com/godbus/dbus/v5"
)

func TestUnitNameFromPath(t *testing.T) {
	tests := []struct {
		name   string
		path   dbus.ObjectPath
		want   string
		wantOK bool
	}{
		{"service", sdUnitPrefix + "hello_2eservice", "hello.service", true},
		{"dashes and template", sdUnitPrefix + "foo_2dbar_40x_2eservice", "foo-bar@x.service", true},
		{"leading digit", sdUnitPrefix + "_31x_2eservice", "1x.service", true},
		{"root slice", sdUnitPrefix + "_2d_2eslice", "-.slice", true},
		{"truncated escape", sdUnitPrefix + "bad_2", "", false},
		{"bad hex", sdUnitPrefix + "bad_zz", "", false},
		{"manager object", sdPath, "", false},
		{"job object", "/org/freedesktop/systemd1/job/12", "", false},
		{"nested", sdUnitPrefix + "a/b", "", false},
		{"empty name", sdUnitPrefix, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := unitNameFromPath(tc.path)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("unitNameFromPath(%q) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func unitPathOf(escaped string) dbus.ObjectPath { return dbus.ObjectPath(sdUnitPrefix + escaped) }

func unitChanged(escaped string, props map[string]any, invalidated ...string) *dbus.Signal {
	return changed(escaped, sdUnitIface, props, invalidated...)
}

func changed(escaped, iface string, props map[string]any, invalidated ...string) *dbus.Signal {
	vs := make(map[string]dbus.Variant, len(props))
	for k, v := range props {
		vs[k] = dbus.MakeVariant(v)
	}
	if invalidated == nil {
		invalidated = []string{}
	}
	return &dbus.Signal{
		Path: unitPathOf(escaped),
		Name: sigPropertiesChanged,
		Body: []any{iface, vs, invalidated},
	}
}

func removed(name, escaped string) *dbus.Signal {
	return &dbus.Signal{Path: sdPath, Name: sigUnitRemoved, Body: []any{name, unitPathOf(escaped)}}
}

func states(load, active, sub string) map[string]any {
	return map[string]any{"LoadState": load, "ActiveState": active, "SubState": sub, "Id": "ignored"}
}

func TestStateCacheApply(t *testing.T) {
	type step struct {
		sig      *dbus.Signal
		wantName string // "" when the signal must not be reported
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"start then repeats", []step{
			{unitChanged("a_2eservice", states("loaded", "activating", "start")), "a.service"},
			{unitChanged("a_2eservice", states("loaded", "active", "running")), "a.service"},
			{unitChanged("a_2eservice", states("loaded", "active", "running")), ""},
			{unitChanged("a_2eservice", states("loaded", "active", "running")), ""},
		}},
		{"main PID changes", []step{
			{changed("a_2eservice", sdServiceIface, map[string]any{"MainPID": uint32(42), "Result": "success"}), "a.service"},
			{changed("a_2eservice", sdServiceIface, map[string]any{"MainPID": uint32(42), "Result": "success"}), ""},
			{changed("a_2eservice", sdServiceIface, map[string]any{"MainPID": uint32(0)}), "a.service"},
			{changed("a_2eservice", sdServiceIface, map[string]any{"Result": "exit-code"}), ""},
		}},
		{"first sight of an idle unknown unit", []step{
			{unitChanged("x_2eservice", states("not-found", "inactive", "dead")), ""},
		}},
		{"first sight of an idle loaded unit", []step{
			{unitChanged("x_2eservice", states("loaded", "inactive", "dead")), "x.service"},
		}},
		{"unload forgets", []step{
			{unitChanged("a_2eservice", states("loaded", "failed", "failed")), "a.service"},
			{removed("a.service", "a_2eservice"), ""},
			{unitChanged("a_2eservice", states("loaded", "failed", "failed")), "a.service"},
		}},
		{"invalidated state", []step{
			{unitChanged("a_2eservice", states("loaded", "active", "running")), "a.service"},
			{unitChanged("a_2eservice", map[string]any{}, "ActiveState"), "a.service"},
			{unitChanged("a_2eservice", map[string]any{}, "Conditions", "Asserts"), ""},
		}},
		{"other interfaces and signals", []step{
			{changed("a_2esocket", "org.freedesktop.systemd1.Socket", map[string]any{"Result": "success"}), ""},
			{&dbus.Signal{Path: sdPath, Name: sdManagerIface + ".UnitNew", Body: []any{"a.service", unitPathOf("a_2eservice")}}, ""},
			{&dbus.Signal{Path: sdPath, Name: sdManagerIface + ".Reloading", Body: []any{true}}, ""},
			{&dbus.Signal{Path: "/org/freedesktop/systemd1/job/3", Name: sigPropertiesChanged,
				Body: []any{"org.freedesktop.systemd1.Job", map[string]dbus.Variant{}, []string{}}}, ""},
		}},
		{"units are independent", []step{
			{unitChanged("a_2eservice", states("loaded", "active", "running")), "a.service"},
			{unitChanged("b_2eservice", states("loaded", "active", "running")), "b.service"},
			{unitChanged("a_2eservice", states("loaded", "active", "running")), ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := stateCache{}
			for i, st := range tc.steps {
				name, ok := c.apply(st.sig)
				if !ok {
					name = ""
				}
				if name != st.wantName {
					t.Errorf("step %d (%s): reported %q, want %q", i, st.sig.Name, name, st.wantName)
				}
			}
		})
	}
}

func TestMergeBatch(t *testing.T) {
	set := func(names ...string) map[string]struct{} {
		m := make(map[string]struct{}, len(names))
		for _, n := range names {
			m[n] = struct{}{}
		}
		return m
	}
	tests := []struct {
		name  string
		batch []string
		add   map[string]struct{}
		want  []string
	}{
		{"empty", nil, set(), nil},
		{"new batch", nil, set("b", "a"), []string{"a", "b"}},
		{"overlap", []string{"a", "c"}, set("c", "b"), []string{"a", "b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mergeBatch(slices.Clone(tc.batch), tc.add); !slices.Equal(got, tc.want) {
				t.Errorf("mergeBatch(%v, %v) = %v, want %v", tc.batch, tc.add, got, tc.want)
			}
		})
	}
}
