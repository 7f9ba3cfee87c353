package fleetd

import (
	"log/slog"
	"maps"
	"slices"

	"github.com/fleet-next/fleet/unit"
)

// ConfigDiff lists, sorted, the configuration keys whose values differ
// between a and b.
func ConfigDiff(a, b Config) []string {
	var out []string
	for _, k := range configKeys {
		if k.get != nil && !sameValue(k.get(&a), k.get(&b)) {
			out = append(out, k.name)
		}
	}
	slices.Sort(out)
	return out
}

// sameValue compares two values of one configuration field; a nil and an
// empty list or map are the same.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case []string:
		return slices.Equal(a, b.([]string))
	case map[string]string:
		return maps.Equal(a, b.(map[string]string))
	}
	return a == b
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
