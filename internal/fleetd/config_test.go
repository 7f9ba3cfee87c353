package fleetd

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeConf(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fleet.conf")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	file := writeConf(t, `# comment
; another
etcd_servers=["http://10.0.0.1:2379","http://10.0.0.2:2379"]
metadata="region=eu, disk = ssd,bogus,region=us"
agent_ttl=10s
engine_reconcile_interval=0.5
public_ip = 192.0.2.7
systemd_user=true
token_limit=50
api_listen=unix:///run/f.sock,tcp://127.0.0.1:9000
shutdown_purge=false
`)
	tests := []struct {
		name    string
		path    string
		env     []string
		check   func(t *testing.T, c Config)
		ignored []string
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c, func() Config { d := DefaultConfig(); return d }()) {
				t.Errorf("got %+v, want defaults", c)
			}
		}},
		{name: "file", path: file, check: func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c.EtcdServers, []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}) {
				t.Errorf("etcd_servers = %v", c.EtcdServers)
			}
			if !reflect.DeepEqual(c.Metadata, map[string]string{"region": "us", "disk": "ssd"}) {
				t.Errorf("metadata = %v", c.Metadata)
			}
			if c.AgentTTL != 10*time.Second || c.EngineReconcile != 500*time.Millisecond || c.PublicIP != "192.0.2.7" ||
				!c.SystemdUser || c.TokenLimit != 50 || c.ShutdownPurge || len(c.APIListen) != 2 {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "environment wins over file", path: file, env: []string{"FLEET_AGENT_TTL=5s", "FLEET_ETCD_SERVERS=http://127.0.0.1:1,http://127.0.0.1:2", "HOME=/root"},
			check: func(t *testing.T, c Config) {
				if c.AgentTTL != 5*time.Second || len(c.EtcdServers) != 2 || c.EtcdServers[1] != "http://127.0.0.1:2" {
					t.Errorf("got ttl %v servers %v", c.AgentTTL, c.EtcdServers)
				}
			}},
		{name: "ignored keys are reported", env: []string{"FLEET_DISABLE_WATCHES=true", "FLEET_ENABLE_GRPC=false"},
			ignored: []string{"disable_watches", "enable_grpc"}, check: func(t *testing.T, c Config) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, ignored, err := LoadConfig(tc.path, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ignored, tc.ignored) {
				t.Errorf("ignored = %v, want %v", ignored, tc.ignored)
			}
			tc.check(t, c)
		})
	}
}

func TestLoadConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, file string
		env        []string
		key        string
	}{
		{name: "unknown key in file", file: "etcd_server=http://x:1\n", key: "etcd_server"},
		{name: "bad duration", env: []string{"FLEET_AGENT_TTL=thirty"}, key: "agent_ttl"},
		{name: "ttl too short", env: []string{"FLEET_AGENT_TTL=10ms"}, key: "agent_ttl"},
		{name: "bad bool", file: "systemd_user=maybe\n", key: "systemd_user"},
		{name: "bad int", file: "token_limit=lots\n", key: "token_limit"},
		{name: "token limit range", file: "token_limit=0\n", key: "token_limit"},
		{name: "bad etcd url", file: "etcd_servers=127.0.0.1:2379\n", key: "etcd_servers"},
		{name: "bad listen", file: "api_listen=unix://relative.sock\n", key: "api_listen"},
		{name: "negative interval", file: "engine_reconcile_interval=-1\n", key: "engine_reconcile_interval"},
		{name: "relative units dir", file: "units_directory=run/units\n", key: "units_directory"},
		{name: "cert without key", file: "etcd_certfile=/c.pem\n", key: "etcd_keyfile"},
		{name: "machine id with slash", env: []string{"FLEET_MACHINE_ID=a/b"}, key: "machine_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = writeConf(t, tc.file)
			}
			_, _, err := LoadConfig(path, tc.env)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("err = %v, want a ConfigError naming %q", err, tc.key)
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Errorf("message %q does not name the key", err)
			}
		})
	}
}

func TestLoadConfigFileProblems(t *testing.T) {
	if _, _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.conf"), nil); err == nil {
		t.Error("missing config file: no error")
	}
	if _, _, err := LoadConfig(t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory as config file: err = %v", err)
	}
	if _, _, err := LoadConfig(writeConf(t, "[section]\nagent_ttl=1s\n"), nil); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("section header: err = %v", err)
	}
	if _, _, err := LoadConfig(writeConf(t, "agent_ttl\n"), nil); err == nil || !strings.Contains(err.Error(), "key=value") {
		t.Errorf("line without '=': err = %v", err)
	}
}

func TestParseMetadata(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
	}{
		{"", map[string]string{}},
		{`"a=b,c=d"`, map[string]string{"a": "b", "c": "d"}},
		{" a = b , c=d=e ", map[string]string{"a": "b", "c": "d=e"}},
		{"a=1,a=2", map[string]string{"a": "2"}},
		{"novalue,=x,b=", map[string]string{"b": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := ParseMetadata(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseMetadata(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestEffectiveConfigLogNamesEveryKeyButSecrets(t *testing.T) {
	c := DefaultConfig()
	c.EtcdPassword = "hunter2"
	c.MachineID = "from-the-config"
	var buf bytes.Buffer
	logConfig(slog.New(slog.NewTextHandler(&buf, nil)), c, "in-use")
	out := buf.String()
	for _, k := range configKeys {
		logged := strings.Contains(out, " "+k.name+"=")
		if want := k.get != nil && !k.secret; logged != want {
			t.Errorf("key %s logged %v, want %v", k.name, logged, want)
		}
	}
	for _, want := range []string{" machine_id=in-use ", " etcd_servers=http://127.0.0.1:2379,http://127.0.0.1:4001 ",
		" agent_ttl=30s "} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "from-the-config") {
		t.Errorf("log shows the password or the configured machine ID instead of the one in use:\n%s", out)
	}
}
