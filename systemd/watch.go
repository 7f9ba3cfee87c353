package systemd

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// coalesceWindow is how long Watch gathers changes before it delivers them.
const coalesceWindow = 50 * time.Millisecond

// D-Bus signal names Watch acts on.
const (
	sigPropertiesChanged = "org.freedesktop.DBus.Properties.PropertiesChanged"
	sigUnitRemoved       = sdManagerIface + ".UnitRemoved"
)

// Watch delivers batches of unit names whose load, active or sub state or
// main PID changed, until ctx ends or the Manager closes; then the channel is
// closed. It is also closed if the connection to systemd is lost, so callers
// should fall back to polling States.
//
// Each Watch has its own connection. Names are sorted and unique within a
// batch; a name may appear again in the next batch. Signals that repeat the
// state Watch last saw for a unit are dropped, which keeps the storm of
// signals of a daemon-reload cheap. Units that systemd merely loads or
// unloads (as any query of an unknown or idle unit does) are not reported:
// their state as States sees it does not change.
func (m *Manager) Watch(ctx context.Context) (<-chan []string, error) {
	ctx, cancel := context.WithCancel(ctx)
	conn, err := m.dial.dial(ctx, dbus.WithContext(ctx), dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch: %w", err)
	}
	// Register before subscribing so that no signal is missed; the
	// sequential handler queues without bound and keeps signal order.
	signals := make(chan *dbus.Signal, 256)
	conn.Signal(signals)
	if err := m.subscribe(ctx, conn); err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("watch: %w", err)
	}
	out := make(chan []string)
	go func() {
		defer close(out)
		defer conn.Close()
		defer cancel()
		m.watchLoop(ctx, signals, out)
	}()
	return out, nil
}

// subscribe asks systemd to emit unit signals and, on a bus, asks the bus to
// route them to conn. A peer-to-peer connection receives every signal.
func (m *Manager) subscribe(ctx context.Context, conn *dbus.Conn) error {
	if m.dial.kind != busPrivate {
		rules := [][]dbus.MatchOption{
			{
				dbus.WithMatchSender(sdService),
				dbus.WithMatchInterface("org.freedesktop.DBus.Properties"),
				dbus.WithMatchMember("PropertiesChanged"),
				dbus.WithMatchPathNamespace(dbus.ObjectPath(strings.TrimSuffix(sdUnitPrefix, "/"))),
			},
			{
				dbus.WithMatchSender(sdService),
				dbus.WithMatchInterface(sdManagerIface),
				dbus.WithMatchMember("UnitRemoved"),
			},
		}
		for _, rule := range rules {
			if err := conn.AddMatchSignalContext(ctx, rule...); err != nil {
				return fmt.Errorf("add match rule: %w", err)
			}
		}
	}
	if err := conn.Object(sdService, sdPath).CallWithContext(ctx, sdManagerIface+".Subscribe", 0).Store(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return nil
}

func (m *Manager) watchLoop(ctx context.Context, signals <-chan *dbus.Signal, out chan<- []string) {
	var (
		seen    = stateCache{}
		pending = map[string]struct{}{} // changed names not yet in a batch
		batch   []string                // built batch waiting for the reader
		outC    chan<- []string         // out while batch is non-empty
		timer   *time.Timer
		timerC  <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.done:
			return
		case sig, ok := <-signals:
			if !ok {
				if ctx.Err() == nil {
					m.log.Warn("systemd watch connection lost")
				}
				return
			}
			name, changed := seen.apply(sig)
			if !changed {
				continue
			}
			pending[name] = struct{}{}
			if timerC == nil {
				timer = time.NewTimer(coalesceWindow)
				timerC = timer.C
			}
		case <-timerC:
			timerC = nil
			batch = mergeBatch(batch, pending)
			clear(pending)
			outC = out
		case outC <- batch:
			batch, outC = nil, nil
		}
	}
}

// mergeBatch adds the names of set to batch, keeping it sorted and unique.
func mergeBatch(batch []string, set map[string]struct{}) []string {
	for name := range set {
		batch = append(batch, name)
	}
	slices.Sort(batch)
	return slices.Compact(batch)
}

// unitSnapshot is the part of a unit's state Watch reports changes of.
type unitSnapshot struct {
	load, active, sub string
	mainPID           uint32
}

// notLoaded is how States reports a unit systemd has not loaded.
func notLoaded() unitSnapshot {
	return unitSnapshot{load: "not-found", active: "inactive", sub: "dead"}
}

// stateCache remembers the last state signalled for every loaded unit.
type stateCache map[string]unitSnapshot

// apply folds sig into the cache and reports the unit it concerns and
// whether that unit's state changed.
func (c stateCache) apply(sig *dbus.Signal) (string, bool) {
	switch sig.Name {
	case sigUnitRemoved:
		// An unloaded unit reads as not-found until loaded again; forget it
		// so that the cache holds loaded units only.
		if len(sig.Body) > 0 {
			if name, ok := sig.Body[0].(string); ok {
				delete(c, name)
			}
		}
		return "", false
	case sigPropertiesChanged:
	default:
		return "", false
	}
	name, ok := unitNameFromPath(sig.Path)
	if !ok || len(sig.Body) < 2 {
		return "", false
	}
	iface, _ := sig.Body[0].(string)
	props, _ := sig.Body[1].(map[string]dbus.Variant)
	var invalidated []string
	if len(sig.Body) > 2 {
		invalidated, _ = sig.Body[2].([]string)
	}
	old, known := c[name]
	if !known {
		old = notLoaded()
	}
	next := old
	unknown := false // a watched property was invalidated without a value
	switch iface {
	case sdUnitIface:
		setString(props, "LoadState", &next.load)
		setString(props, "ActiveState", &next.active)
		setString(props, "SubState", &next.sub)
		unknown = slices.ContainsFunc(invalidated, func(p string) bool {
			return p == "LoadState" || p == "ActiveState" || p == "SubState"
		})
	case sdServiceIface:
		if v, ok := props["MainPID"]; ok {
			if pid, ok := v.Value().(uint32); ok {
				next.mainPID = pid
			}
		}
		unknown = slices.Contains(invalidated, "MainPID")
	default:
		return "", false
	}
	c[name] = next
	return name, unknown || next != old
}

func setString(props map[string]dbus.Variant, key string, dst *string) {
	if v, ok := props[key]; ok {
		if s, ok := v.Value().(string); ok {
			*dst = s
		}
	}
}

// unitNameFromPath reverses systemd's escaping of unit names in object
// paths: every byte outside [A-Za-z0-9] becomes _xx (hex).
func unitNameFromPath(p dbus.ObjectPath) (string, bool) {
	escaped, ok := strings.CutPrefix(string(p), sdUnitPrefix)
	if !ok || escaped == "" || strings.Contains(escaped, "/") {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(escaped))
	for i := 0; i < len(escaped); i++ {
		if escaped[i] != '_' {
			b.WriteByte(escaped[i])
			continue
		}
		if i+2 >= len(escaped) {
			return "", false
		}
		v, err := strconv.ParseUint(escaped[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}
