package fleetd

import (
	"log/slog"
	"maps"
	"slices"
	"sort"

	"github.com/fleet-next/fleet/unit"
)

// ConfigDiff lists, sorted, the configuration keys whose values differ
// between a and b.
func ConfigDiff(a, b Config) []string {
	var out []string
	add := func(key string, differ bool) {
		if differ {
			out = append(out, key)
		}
	}
	add("etcd_servers", !slices.Equal(a.EtcdServers, b.EtcdServers))
	add("etcd_key_prefix", a.EtcdKeyPrefix != b.EtcdKeyPrefix)
	add("etcd_keyfile", a.EtcdKeyFile != b.EtcdKeyFile)
	add("etcd_certfile", a.EtcdCertFile != b.EtcdCertFile)
	add("etcd_cafile", a.EtcdCAFile != b.EtcdCAFile)
	add("etcd_username", a.EtcdUsername != b.EtcdUsername)
	add("etcd_password", a.EtcdPassword != b.EtcdPassword)
	add("etcd_request_timeout", a.EtcdRequestTimeout != b.EtcdRequestTimeout)
	add("public_ip", a.PublicIP != b.PublicIP)
	add("metadata", !maps.Equal(a.Metadata, b.Metadata))
	add("agent_ttl", a.AgentTTL != b.AgentTTL)
	add("engine_reconcile_interval", a.EngineReconcile != b.EngineReconcile)
	add("units_directory", a.UnitsDirectory != b.UnitsDirectory)
	add("systemd_user", a.SystemdUser != b.SystemdUser)
	add("token_limit", a.TokenLimit != b.TokenLimit)
	add("disable_engine", a.DisableEngine != b.DisableEngine)
	add("verbosity", a.Verbosity != b.Verbosity)
	add("machine_id", a.MachineID != b.MachineID)
	add("api_listen", !slices.Equal(a.APIListen, b.APIListen))
	add("data_dir", a.DataDir != b.DataDir)
	add("shutdown_purge", a.ShutdownPurge != b.ShutdownPurge)
	add("api_tls_cert_file", a.APITLSCertFile != b.APITLSCertFile)
	add("api_tls_key_file", a.APITLSKeyFile != b.APITLSKeyFile)
	add("api_tls_client_ca_file", a.APITLSClientCAFile != b.APITLSClientCAFile)
	add("api_socket_mode", a.APISocketMode != b.APISocketMode)
	add("api_socket_group", a.APISocketGroup != b.APISocketGroup)
	add("audit_retention", a.AuditRetention != b.AuditRetention)
	add("audit_max_entries", a.AuditMaxEntries != b.AuditMaxEntries)
	sort.Strings(out)
	return out
}

// LogLevel is the log level for a verbosity: debug above 0, else info.
func LogLevel(verbosity int) slog.Level {
	if verbosity > 0 {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// machineRecord is the machine record presence registers (*presence.Presence).
type machineRecord interface {
	Machine() unit.Machine
	SetMachine(unit.Machine)
}

// reloader applies a re-read configuration to a running fleetd: metadata
// (the machine record is rewritten on its lease) and verbosity (the log
// level) change at once; any other changed key is reported as needing a
// restart.
type reloader struct {
	running Config // as loaded, with the keys applied since
	load    func() (Config, error)
	level   *slog.LevelVar // nil: the log level cannot change
	machine machineRecord
	log     *slog.Logger
}

// reload re-reads the configuration and applies what can change at run time.
func (r *reloader) reload() {
	r.log.Info("Reloading configuration")
	next, err := r.load()
	if err != nil {
		r.log.Error("reloading configuration failed; keeping the running configuration", "err", err)
		return
	}
	changed := ConfigDiff(r.running, next)
	var restart []string
	for _, k := range changed {
		switch k {
		case "metadata":
			r.running.Metadata = next.Metadata
			m := r.machine.Machine()
			m.Metadata = next.Metadata
			r.machine.SetMachine(m)
			r.log.Info("configuration applied", "key", k, "metadata", next.Metadata)
		case "verbosity":
			if r.level == nil {
				restart = append(restart, k)
				continue
			}
			r.running.Verbosity = next.Verbosity
			r.level.Set(LogLevel(next.Verbosity))
			r.log.Info("configuration applied", "key", k, "verbosity", next.Verbosity)
		default:
			restart = append(restart, k)
		}
	}
	switch {
	case len(changed) == 0:
		r.log.Info("configuration unchanged")
	case len(restart) > 0:
		r.log.Warn("configuration changes need a restart of fleetd to take effect", "keys", restart)
	}
}
