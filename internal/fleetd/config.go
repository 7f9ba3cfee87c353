package fleetd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
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
	// APIAllowedHosts are names (besides the listeners' addresses,
	// localhost and the host name) that TCP listeners accept in the Host
	// header, e.g. a load balancer's or a DNS alias.
	APIAllowedHosts    []string
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

// configKey is one configuration key: the Config field it sets and how
// its values parse. It is the one list of the keys: loading, ConfigDiff
// and the effective configuration in the log all derive from it.
type configKey struct {
	name string
	set  func(c *Config, v string) error
	// get reads the field back; nil for a key accepted for compatibility
	// that changes nothing.
	get func(c *Config) any
	// ignored says why an accepted key changes nothing.
	ignored string
	// secret keys are never logged.
	secret bool
}

// field binds the key name to the Config field f returns, with values
// parsed by parse.
func field[T any](name string, f func(c *Config) *T, parse func(string) (T, error)) configKey {
	return configKey{
		name: name,
		set: func(c *Config, v string) error {
			x, err := parse(v)
			if err != nil {
				return err
			}
			*f(c) = x
			return nil
		},
		get: func(c *Config) any { return *f(c) },
	}
}

// secretField is field for a value that must stay out of the logs.
func secretField[T any](name string, f func(c *Config) *T, parse func(string) (T, error)) configKey {
	k := field(name, f, parse)
	k.secret = true
	return k
}

// ignoredKey is accepted, its value checked with parse, and changes
// nothing; fleetd warns that it has no effect.
func ignoredKey[T any](name string, parse func(string) (T, error), why string) configKey {
	return configKey{name: name, ignored: why, set: func(_ *Config, v string) error {
		_, err := parse(v)
		return err
	}}
}

// configKeys is the closed set of configuration keys, in the order of
// Config's fields, then the ignored ones.
var configKeys = []configKey{
	field("etcd_servers", func(c *Config) *[]string { return &c.EtcdServers }, parseList),
	field("etcd_key_prefix", func(c *Config) *string { return &c.EtcdKeyPrefix }, parseString),
	field("etcd_keyfile", func(c *Config) *string { return &c.EtcdKeyFile }, parseString),
	field("etcd_certfile", func(c *Config) *string { return &c.EtcdCertFile }, parseString),
	field("etcd_cafile", func(c *Config) *string { return &c.EtcdCAFile }, parseString),
	field("etcd_username", func(c *Config) *string { return &c.EtcdUsername }, parseString),
	secretField("etcd_password", func(c *Config) *string { return &c.EtcdPassword }, parseString),
	field("etcd_request_timeout", func(c *Config) *time.Duration { return &c.EtcdRequestTimeout }, parseSeconds),
	field("public_ip", func(c *Config) *string { return &c.PublicIP }, parseString),
	field("metadata", func(c *Config) *map[string]string { return &c.Metadata }, parseMetadata),
	field("agent_ttl", func(c *Config) *time.Duration { return &c.AgentTTL }, parseDuration),
	field("engine_reconcile_interval", func(c *Config) *time.Duration { return &c.EngineReconcile }, parseSeconds),
	field("units_directory", func(c *Config) *string { return &c.UnitsDirectory }, parseString),
	field("systemd_user", func(c *Config) *bool { return &c.SystemdUser }, parseBool),
	field("token_limit", func(c *Config) *int { return &c.TokenLimit }, parseInt),
	field("disable_engine", func(c *Config) *bool { return &c.DisableEngine }, parseBool),
	field("verbosity", func(c *Config) *int { return &c.Verbosity }, parseInt),
	field("machine_id", func(c *Config) *string { return &c.MachineID }, parseString),
	field("api_listen", func(c *Config) *[]string { return &c.APIListen }, parseList),
	field("api_allowed_hosts", func(c *Config) *[]string { return &c.APIAllowedHosts }, parseList),
	field("data_dir", func(c *Config) *string { return &c.DataDir }, parseString),
	field("shutdown_purge", func(c *Config) *bool { return &c.ShutdownPurge }, parseBool),
	field("api_tls_cert_file", func(c *Config) *string { return &c.APITLSCertFile }, parseString),
	field("api_tls_key_file", func(c *Config) *string { return &c.APITLSKeyFile }, parseString),
	field("api_tls_client_ca_file", func(c *Config) *string { return &c.APITLSClientCAFile }, parseString),
	field("api_socket_mode", func(c *Config) *fs.FileMode { return &c.APISocketMode }, parseMode),
	field("api_socket_group", func(c *Config) *string { return &c.APISocketGroup }, parseTrimmed),
	field("audit_retention", func(c *Config) *time.Duration { return &c.AuditRetention }, parseDuration),
	field("audit_max_entries", func(c *Config) *int { return &c.AuditMaxEntries }, parseInt),
	ignoredKey("disable_watches", parseBool, "watches are per machine and cheap; there is nothing to disable"),
	ignoredKey("enable_grpc", parseBool, "agents never talk to the engine directly"),
	ignoredKey("verify_units", parseString, "unit signing is not supported"),
	ignoredKey("authorized_keys_file", parseString, "unit signing is not supported"),
}

// keyByName indexes configKeys.
var keyByName = func() map[string]configKey {
	m := make(map[string]configKey, len(configKeys))
	for _, k := range configKeys {
		m[k.name] = k
	}
	return m
}()

// logAttrs is the effective configuration as log attributes, with the
// machine ID in use (which may come from /etc/machine-id) and without
// secrets.
func (c Config) logAttrs(machineID string) []any {
	attrs := []any{"machine_id", machineID}
	for _, k := range configKeys {
		if k.get == nil || k.secret || k.name == "machine_id" {
			continue
		}
		v := k.get(&c)
		if list, ok := v.([]string); ok {
			v = strings.Join(list, ",")
		}
		attrs = append(attrs, k.name, v)
	}
	return attrs
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
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			if err := applyKey(&c, k, kv[k], path); err != nil {
				return c, nil, err
			}
			if keyByName[k].ignored != "" {
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
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if _, known := keyByName[k]; !known {
			continue // FLEET_* variables are also used by other tools; only known keys apply
		}
		if err := applyKey(&c, k, env[k], "environment FLEET_"+strings.ToUpper(k)); err != nil {
			return c, nil, err
		}
		if keyByName[k].ignored != "" {
			ignored = append(ignored, k)
		}
	}
	if err := c.Validate(); err != nil {
		return c, nil, err
	}
	return c, ignored, nil
}

func applyKey(c *Config, k, v, source string) error {
	key, ok := keyByName[k]
	if !ok {
		return &ConfigError{Key: k, Source: source, Err: errors.New("unknown configuration key")}
	}
	if err := key.set(c, v); err != nil {
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

func parseString(v string) (string, error) { return v, nil }

func parseMetadata(v string) (map[string]string, error) { return ParseMetadata(v), nil }

func parseList(v string) ([]string, error) {
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
		return nil, errors.New("empty list")
	}
	return out, nil
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, fmt.Errorf("%q is not a boolean", v)
	}
	return b, nil
}

func parseInt(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", v)
	}
	return n, nil
}

// parseSeconds accepts fleet's float seconds ("1.5") or a Go duration ("1500ms").
func parseSeconds(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f <= 0 {
			return 0, fmt.Errorf("%q must be positive", v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	return parseDuration(v)
}

// parseTrimmed is the value without surrounding white space.
func parseTrimmed(v string) (string, error) { return strings.TrimSpace(v), nil }

// parseMode parses an octal file mode such as 0660 (permission bits only).
func parseMode(v string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode such as 0660", v)
	}
	return fs.FileMode(n), nil
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 30s)", v)
	}
	return d, nil
}

// ExplicitKeys lists the keys the file at path or the environment set.
func ExplicitKeys(path string, environ []string) []string {
	var out []string
	if path != "" {
		if f, err := os.Open(path); err == nil {
			kv, err := parseINI(f, path)
			f.Close()
			if err == nil {
				out = append(out, slices.Sorted(maps.Keys(kv))...)
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
