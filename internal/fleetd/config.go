package fleetd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is fleetd's validated configuration (spec §7.1 plus machine_id,
// api_listen, data_dir and shutdown_purge).
type Config struct {
	EtcdServers        []string
	EtcdKeyPrefix      string
	EtcdKeyFile        string
	EtcdCertFile       string
	EtcdCAFile         string
	EtcdUsername       string
	EtcdPassword       string
	EtcdRequestTimeout time.Duration
	PublicIP           string
	Metadata           map[string]string
	AgentTTL           time.Duration
	EngineReconcile    time.Duration
	UnitsDirectory     string // "" = default for the manager in use
	SystemdUser        bool
	TokenLimit         int
	DisableEngine      bool
	Verbosity          int
	MachineID          string // "" = /etc/machine-id
	APIListen          []string
	DataDir            string
	ShutdownPurge      bool
	APITLSCertFile     string // "" = tcp:// listeners are plain HTTP
	APITLSKeyFile      string
	APITLSClientCAFile string      // "" = no client certificates
	APISocketMode      fs.FileMode // of the unix sockets fleetd creates
	APISocketGroup     string      // "" = root's group
	AuditRetention     time.Duration
	AuditMaxEntries    int
}

// DefaultConfig returns fleet's defaults.
func DefaultConfig() Config {
	return Config{
		EtcdServers:        []string{"http://127.0.0.1:2379", "http://127.0.0.1:4001"},
		EtcdKeyPrefix:      "/_coreos.com/fleet/",
		EtcdRequestTimeout: time.Second,
		Metadata:           map[string]string{},
		AgentTTL:           30 * time.Second,
		EngineReconcile:    2 * time.Second,
		TokenLimit:         100,
		APIListen:          []string{"unix:///var/run/fleet.sock"},
		DataDir:            "/var/lib/fleet",
		ShutdownPurge:      true,
		APISocketMode:      socketMode,
		AuditRetention:     30 * 24 * time.Hour,
		AuditMaxEntries:    10000,
	}
}

// ConfigError names the offending key.
type ConfigError struct {
	Key    string
	Source string // file path or "environment"
	Err    error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("config %s: %s: %v", e.Source, e.Key, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

type setter func(c *Config, v string) error

// keys is the closed set of configuration keys.
var configKeys = map[string]setter{
	"etcd_servers":              func(c *Config, v string) error { return setList(&c.EtcdServers, v) },
	"etcd_key_prefix":           func(c *Config, v string) error { c.EtcdKeyPrefix = v; return nil },
	"etcd_keyfile":              func(c *Config, v string) error { c.EtcdKeyFile = v; return nil },
	"etcd_certfile":             func(c *Config, v string) error { c.EtcdCertFile = v; return nil },
	"etcd_cafile":               func(c *Config, v string) error { c.EtcdCAFile = v; return nil },
	"etcd_username":             func(c *Config, v string) error { c.EtcdUsername = v; return nil },
	"etcd_password":             func(c *Config, v string) error { c.EtcdPassword = v; return nil },
	"etcd_request_timeout":      func(c *Config, v string) error { return setSeconds(&c.EtcdRequestTimeout, v) },
	"public_ip":                 func(c *Config, v string) error { c.PublicIP = v; return nil },
	"metadata":                  func(c *Config, v string) error { c.Metadata = ParseMetadata(v); return nil },
	"agent_ttl":                 func(c *Config, v string) error { return setDuration(&c.AgentTTL, v) },
	"engine_reconcile_interval": func(c *Config, v string) error { return setSeconds(&c.EngineReconcile, v) },
	"units_directory":           func(c *Config, v string) error { c.UnitsDirectory = v; return nil },
	"systemd_user":              func(c *Config, v string) error { return setBool(&c.SystemdUser, v) },
	"token_limit":               func(c *Config, v string) error { return setInt(&c.TokenLimit, v) },
	"disable_engine":            func(c *Config, v string) error { return setBool(&c.DisableEngine, v) },
	"verbosity":                 func(c *Config, v string) error { return setInt(&c.Verbosity, v) },
	"machine_id":                func(c *Config, v string) error { c.MachineID = v; return nil },
	"api_listen":                func(c *Config, v string) error { return setList(&c.APIListen, v) },
	"data_dir":                  func(c *Config, v string) error { c.DataDir = v; return nil },
	"shutdown_purge":            func(c *Config, v string) error { return setBool(&c.ShutdownPurge, v) },
	"api_tls_cert_file":         func(c *Config, v string) error { c.APITLSCertFile = v; return nil },
	"api_tls_key_file":          func(c *Config, v string) error { c.APITLSKeyFile = v; return nil },
	"api_tls_client_ca_file":    func(c *Config, v string) error { c.APITLSClientCAFile = v; return nil },
	"api_socket_mode":           func(c *Config, v string) error { return setMode(&c.APISocketMode, v) },
	"api_socket_group":          func(c *Config, v string) error { c.APISocketGroup = strings.TrimSpace(v); return nil },
	"audit_retention":           func(c *Config, v string) error { return setDuration(&c.AuditRetention, v) },
	"audit_max_entries":         func(c *Config, v string) error { return setInt(&c.AuditMaxEntries, v) },
	// Accepted for compatibility; they change nothing here.
	"disable_watches":      func(c *Config, v string) error { var b bool; return setBool(&b, v) },
	"enable_grpc":          func(c *Config, v string) error { var b bool; return setBool(&b, v) },
	"verify_units":         func(c *Config, v string) error { return nil },
	"authorized_keys_file": func(c *Config, v string) error { return nil },
}

// ignoredKeys are accepted but have no effect; fleetd logs a warning.
var ignoredKeys = map[string]string{
	"disable_watches":      "watches are per machine and cheap; there is nothing to disable",
	"enable_grpc":          "agents never talk to the engine directly",
	"verify_units":         "unit signing is not supported",
	"authorized_keys_file": "unit signing is not supported",
}

// LoadConfig reads the config file (if path is non-empty) and then the
// FLEET_<KEY> environment variables, which win. It returns the keys that
// were set and are ignored, for the caller to warn about.
func LoadConfig(path string, environ []string) (Config, []string, error) {
	c := DefaultConfig()
	var ignored []string
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return c, nil, fmt.Errorf("open config file: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return c, nil, fmt.Errorf("config file %s is a directory", path)
		}
		kv, err := parseINI(f, path)
		if err != nil {
			return c, nil, err
		}
		for _, k := range sortedKeys(kv) {
			if err := applyKey(&c, k, kv[k], path); err != nil {
				return c, nil, err
			}
			if _, ok := ignoredKeys[k]; ok {
				ignored = append(ignored, k)
			}
		}
	}
	env := map[string]string{}
	for _, e := range environ {
		k, v, ok := strings.Cut(e, "=")
		if !ok || !strings.HasPrefix(k, "FLEET_") {
			continue
		}
		env[strings.ToLower(strings.TrimPrefix(k, "FLEET_"))] = v
	}
	for _, k := range sortedKeys(env) {
		if _, known := configKeys[k]; !known {
			continue // FLEET_* variables are also used by other tools; only known keys apply
		}
		if err := applyKey(&c, k, env[k], "environment FLEET_"+strings.ToUpper(k)); err != nil {
			return c, nil, err
		}
		if _, ok := ignoredKeys[k]; ok {
			ignored = append(ignored, k)
		}
	}
	if err := c.Validate(); err != nil {
		return c, nil, err
	}
	return c, ignored, nil
}

func applyKey(c *Config, k, v, source string) error {
	set, ok := configKeys[k]
	if !ok {
		return &ConfigError{Key: k, Source: source, Err: errors.New("unknown configuration key")}
	}
	if err := set(c, v); err != nil {
		return &ConfigError{Key: k, Source: source, Err: err}
	}
	return nil
}

// Validate checks values that parse but make no sense.
func (c Config) Validate() error {
	bad := func(k string, format string, args ...any) error {
		return &ConfigError{Key: k, Source: "value", Err: fmt.Errorf(format, args...)}
	}
	if len(c.EtcdServers) == 0 {
		return bad("etcd_servers", "at least one server is required")
	}
	for _, s := range c.EtcdServers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("etcd_servers", "%q is not an http:// or https:// URL", s)
		}
	}
	if c.AgentTTL < time.Second {
		return bad("agent_ttl", "must be at least 1s, got %s", c.AgentTTL)
	}
	if c.EngineReconcile <= 0 {
		return bad("engine_reconcile_interval", "must be positive")
	}
	if c.EtcdRequestTimeout <= 0 {
		return bad("etcd_request_timeout", "must be positive")
	}
	if c.TokenLimit < 1 || c.TokenLimit > 65535 {
		return bad("token_limit", "must be between 1 and 65535, got %d", c.TokenLimit)
	}
	if !strings.HasPrefix(c.EtcdKeyPrefix, "/") {
		return bad("etcd_key_prefix", "must start with /")
	}
	if len(c.APIListen) == 0 {
		return bad("api_listen", "at least one listen address is required")
	}
	for _, l := range c.APIListen {
		if _, _, err := ParseListen(l); err != nil {
			return bad("api_listen", "%v", err)
		}
	}
	if (c.EtcdKeyFile == "") != (c.EtcdCertFile == "") {
		return bad("etcd_keyfile", "etcd_keyfile and etcd_certfile go together")
	}
	if c.UnitsDirectory != "" && !filepath.IsAbs(c.UnitsDirectory) {
		return bad("units_directory", "must be an absolute path")
	}
	if c.DataDir != "" && !filepath.IsAbs(c.DataDir) {
		return bad("data_dir", "must be an absolute path")
	}
	if (c.APITLSKeyFile == "") != (c.APITLSCertFile == "") {
		return bad("api_tls_key_file", "api_tls_key_file and api_tls_cert_file go together")
	}
	if c.APITLSClientCAFile != "" && c.APITLSCertFile == "" {
		return bad("api_tls_client_ca_file", "needs api_tls_cert_file and api_tls_key_file: client certificates are verified over TLS")
	}
	if c.AuditRetention <= 0 {
		return bad("audit_retention", "must be positive, got %s", c.AuditRetention)
	}
	if c.AuditMaxEntries < 1 {
		return bad("audit_max_entries", "must be at least 1, got %d", c.AuditMaxEntries)
	}
	if c.MachineID != "" && strings.ContainsAny(c.MachineID, "/ \t\n") {
		return bad("machine_id", "must not contain '/' or white space")
	}
	return nil
}

// ParseListen splits "unix:///path" or "tcp://host:port" into a network and
// address for net.Listen.
func ParseListen(s string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(s, "unix://"):
		p := strings.TrimPrefix(s, "unix://")
		if !filepath.IsAbs(p) {
			return "", "", fmt.Errorf("%q: unix socket path must be absolute (unix:///path)", s)
		}
		return "unix", p, nil
	case strings.HasPrefix(s, "tcp://"):
		a := strings.TrimPrefix(s, "tcp://")
		if !strings.Contains(a, ":") {
			return "", "", fmt.Errorf("%q: want tcp://host:port", s)
		}
		return "tcp", a, nil
	}
	return "", "", fmt.Errorf("%q: want unix:///path or tcp://host:port", s)
}

// ParseMetadata parses fleet's "k=v,k2=v2" metadata: optional surrounding
// quotes, spaces trimmed, the last duplicate wins, pairs without '=' ignored.
func ParseMetadata(s string) map[string]string {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	md := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(pair, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			continue
		}
		md[k] = v
	}
	return md
}

// parseINI reads global key=value lines; '#' and ';' start comments.
func parseINI(r io.Reader, source string) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			return nil, fmt.Errorf("config %s line %d: sections are not supported; use global key=value lines", source, n)
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("config %s line %d: want key=value, got %q", source, n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read config %s: %w", source, err)
	}
	return out, nil
}

func setList(dst *[]string, v string) error {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
		v = v[1 : len(v)-1]
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.Trim(strings.TrimSpace(item), `"`)
		if item != "" {
			out = append(out, item)
		}
	}
	if len(out) == 0 {
		return errors.New("empty list")
	}
	*dst = out
	return nil
}

func setBool(dst *bool, v string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%q is not a boolean", v)
	}
	*dst = b
	return nil
}

func setInt(dst *int, v string) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%q is not an integer", v)
	}
	*dst = n
	return nil
}

// setSeconds accepts fleet's float seconds ("1.5") or a Go duration ("1500ms").
func setSeconds(dst *time.Duration, v string) error {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f <= 0 {
			return fmt.Errorf("%q must be positive", v)
		}
		*dst = time.Duration(f * float64(time.Second))
		return nil
	}
	return setDuration(dst, v)
}

// setMode parses an octal file mode such as 0660 (permission bits only).
func setMode(dst *fs.FileMode, v string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
	if err != nil || n > 0o777 {
		return fmt.Errorf("%q is not an octal mode such as 0660", v)
	}
	*dst = fs.FileMode(n)
	return nil
}

func setDuration(dst *time.Duration, v string) error {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 30s)", v)
	}
	*dst = d
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ExplicitKeys lists the keys the file at path or the environment set.
func ExplicitKeys(path string, environ []string) []string {
	var out []string
	if path != "" {
		if f, err := os.Open(path); err == nil {
			kv, err := parseINI(f, path)
			f.Close()
			if err == nil {
				out = append(out, sortedKeys(kv)...)
			}
		}
	}
	for _, e := range environ {
		k, _, ok := strings.Cut(e, "=")
		if ok && strings.HasPrefix(k, "FLEET_") {
			out = append(out, strings.ToLower(strings.TrimPrefix(k, "FLEET_")))
		}
	}
	return out
}
