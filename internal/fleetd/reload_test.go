package fleetd

import (
	"bytes"
	"errors"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/unit"
)

func TestConfigDiff(t *testing.T) {
	base := DefaultConfig()
	base.Metadata = map[string]string{"region": "eu"}
	with := func(f func(c *Config)) Config {
		c := base
		c.Metadata = map[string]string{"region": "eu"}
		c.EtcdServers = slices.Clone(base.EtcdServers)
		c.APIListen = slices.Clone(base.APIListen)
		f(&c)
		return c
	}
	tests := []struct {
		name string
		next Config
		want []string
	}{
		{name: "identical", next: with(func(*Config) {}), want: nil},
		{name: "metadata value", next: with(func(c *Config) { c.Metadata["region"] = "us" }), want: []string{"metadata"}},
		{name: "metadata key added", next: with(func(c *Config) { c.Metadata["disk"] = "ssd" }), want: []string{"metadata"}},
		{name: "metadata emptied", next: with(func(c *Config) { c.Metadata = map[string]string{} }), want: []string{"metadata"}},
		{name: "verbosity", next: with(func(c *Config) { c.Verbosity = 2 }), want: []string{"verbosity"}},
		{name: "etcd servers reordered", next: with(func(c *Config) { slices.Reverse(c.EtcdServers) }),
			want: []string{"etcd_servers"}},
		{name: "agent ttl", next: with(func(c *Config) { c.AgentTTL = time.Minute }), want: []string{"agent_ttl"}},
		{name: "several, sorted", next: with(func(c *Config) {
			c.Verbosity, c.TokenLimit, c.APIListen = 1, 50, []string{"tcp://127.0.0.1:49153"}
		}), want: []string{"api_listen", "token_limit", "verbosity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ConfigDiff(base, tt.next); !slices.Equal(got, tt.want) {
				t.Errorf("ConfigDiff = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestConfigDiffCoversEveryField changes each field of Config in turn and
// expects ConfigDiff to report exactly one key, a different one each time,
// and every key it reports to be a configuration key.
func TestConfigDiffCoversEveryField(t *testing.T) {
	base := DefaultConfig()
	seen := map[string]string{}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		field := typ.Field(i)
		t.Run(field.Name, func(t *testing.T) {
			next := base
			next.Metadata = map[string]string{}
			v := reflect.ValueOf(&next).Elem().Field(i)
			switch v.Kind() {
			case reflect.String:
				v.SetString("/changed")
			case reflect.Bool:
				v.SetBool(!v.Bool())
			case reflect.Int, reflect.Int64:
				v.SetInt(v.Int() + 7)
			case reflect.Uint32: // a file mode
				v.SetUint(v.Uint() ^ 0o7)
			case reflect.Slice:
				v.Set(reflect.ValueOf([]string{"changed"}))
			case reflect.Map:
				v.Set(reflect.ValueOf(map[string]string{"changed": "yes"}))
			default:
				t.Fatalf("field %s of kind %s: extend this test", field.Name, v.Kind())
			}
			got := ConfigDiff(base, next)
			if len(got) != 1 {
				t.Fatalf("changing %s: ConfigDiff = %v, want exactly one key", field.Name, got)
			}
			if _, ok := keyByName[got[0]]; !ok {
				t.Errorf("changing %s: %q is not a configuration key", field.Name, got[0])
			}
			if other, dup := seen[got[0]]; dup {
				t.Errorf("%s and %s both report %q", other, field.Name, got[0])
			}
			seen[got[0]] = field.Name
		})
	}
}

func TestLogLevel(t *testing.T) {
	tests := []struct {
		name      string
		verbosity int
		debug     bool
	}{
		{"default", 0, false},
		{"negative", -1, false},
		{"one", 1, true},
		{"more", 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LogLevel(tt.verbosity) <= -4; got != tt.debug {
				t.Errorf("LogLevel(%d) = %v, debug %v want %v", tt.verbosity, LogLevel(tt.verbosity), got, tt.debug)
			}
		})
	}
}

func TestReloaderApplies(t *testing.T) {
	running := DefaultConfig()
	running.Metadata = map[string]string{"role": "web"}
	tests := []struct {
		name      string
		next      func(c Config) Config
		loadErr   error
		wantLevel slog.Level
		wantMD    map[string]string
		rewritten bool
		wantLog   []string
		notLog    []string
	}{
		{name: "unchanged", next: func(c Config) Config { return c },
			wantLevel: slog.LevelInfo, wantMD: map[string]string{"role": "web"},
			wantLog: []string{"Reloading configuration", "configuration unchanged"}, notLog: []string{"restart"}},
		{name: "metadata rewrites the machine record",
			next:      func(c Config) Config { c.Metadata = map[string]string{"role": "db"}; return c },
			wantLevel: slog.LevelInfo, wantMD: map[string]string{"role": "db"}, rewritten: true,
			wantLog: []string{"key=metadata"}, notLog: []string{"restart"}},
		{name: "verbosity changes the level", next: func(c Config) Config { c.Verbosity = 1; return c },
			wantLevel: slog.LevelDebug, wantMD: map[string]string{"role": "web"},
			wantLog: []string{"key=verbosity"}, notLog: []string{"restart"}},
		{name: "other keys need a restart",
			next: func(c Config) Config {
				c.AgentTTL, c.TokenLimit, c.Verbosity = time.Minute, 7, 2
				return c
			},
			wantLevel: slog.LevelDebug, wantMD: map[string]string{"role": "web"},
			wantLog: []string{"need a restart", "keys=\"[agent_ttl token_limit]\""}},
		{name: "a failed load keeps the running configuration", loadErr: errors.New("config x: line 3: want key=value"),
			wantLevel: slog.LevelInfo, wantMD: map[string]string{"role": "web"},
			wantLog: []string{"keeping the running configuration", "line 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			level := new(slog.LevelVar)
			pres := &fakeRecord{m: unit.Machine{ID: "m1", Metadata: running.Metadata, APIURL: "http://192.0.2.1:49153"}}
			r := &reloader{running: running, level: level, machine: pres, log: slog.New(slog.NewTextHandler(&buf, nil)),
				load: func() (Config, error) {
					if tt.loadErr != nil {
						return Config{}, tt.loadErr
					}
					return tt.next(running), nil
				}}
			r.reload()
			if level.Level() != tt.wantLevel {
				t.Errorf("level = %v, want %v", level.Level(), tt.wantLevel)
			}
			m := pres.Machine()
			if !maps.Equal(m.Metadata, tt.wantMD) || m.ID != "m1" || m.APIURL != "http://192.0.2.1:49153" {
				t.Errorf("machine = %+v, want metadata %v and the rest unchanged", m, tt.wantMD)
			}
			if pres.sets > 0 && !tt.rewritten {
				t.Error("machine record rewritten without a metadata change")
			}
			if pres.sets == 0 && tt.rewritten {
				t.Error("machine record not rewritten")
			}
			for _, w := range tt.wantLog {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, buf.String())
				}
			}
			for _, w := range tt.notLog {
				if strings.Contains(buf.String(), w) {
					t.Errorf("log has %q:\n%s", w, buf.String())
				}
			}
		})
	}
}

// fakeRecord records SetMachine calls.
type fakeRecord struct {
	m    unit.Machine
	sets int
}

func (f *fakeRecord) Machine() unit.Machine     { return f.m }
func (f *fakeRecord) SetMachine(m unit.Machine) { f.m = m; f.sets++ }
