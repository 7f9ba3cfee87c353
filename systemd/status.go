package systemd

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"

	"github.com/fleet-next/fleet/unit"
)

// UnitStatus is systemd's view of one unit, for people: its states and a
// text laid out as `systemctl status` prints it (without log lines).
type UnitStatus struct {
	unit.SystemdState
	Text string
}

// UnitStatus reads the unit's properties (two D-Bus calls for a loaded
// unit, one otherwise) and the main process's name from /proc. A unit
// systemd does not know is not an error: its LoadState is "not-found" and
// its text says it could not be found.
func (m *Manager) UnitStatus(ctx context.Context, name string) (UnitStatus, error) {
	var props map[string]any
	err := m.call(ctx, func(c *sd.Conn) (err error) {
		props, err = c.GetUnitPropertiesContext(ctx, name)
		return err
	})
	if err != nil {
		return UnitStatus{}, unitError("get properties of", name, err)
	}
	p := statusPropsFromUnit(name, props)
	if typ := unitTypeInterface(name); p.LoadState == "loaded" && typ != "" {
		var tprops map[string]any
		err := m.call(ctx, func(c *sd.Conn) (err error) {
			tprops, err = c.GetUnitTypePropertiesContext(ctx, name, typ)
			return err
		})
		if err != nil {
			return UnitStatus{}, unitError("get "+typ+" properties of", name, err)
		}
		p.addTypeProps(tprops)
		if p.MainPID > 0 {
			p.Comm = processName(p.MainPID)
		}
	}
	st := unit.SystemdState{LoadState: p.LoadState, ActiveState: p.ActiveState, SubState: p.SubState, MainPID: p.MainPID}
	return UnitStatus{SystemdState: st, Text: formatStatus(p, time.Now())}, nil
}

// unitTypeInterface names the D-Bus interface (below org.freedesktop.systemd1)
// holding the type-specific properties of the unit, or "".
func unitTypeInterface(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return ""
	}
	switch suffix := name[i+1:]; suffix {
	case "service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope":
		return strings.ToUpper(suffix[:1]) + suffix[1:]
	}
	return ""
}

// processName returns the command name of pid, or "" if it cannot be read.
func processName(pid uint32) string {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// statusProps are the properties the status text is made of. Timestamps
// are zero when systemd reports none.
type statusProps struct {
	ID, Description               string
	LoadState, LoadErrorMessage   string
	FragmentPath                  string
	UnitFileState, UnitFilePreset string
	ActiveState, SubState, Result string
	ActiveEnter, ActiveExit       time.Time
	InactiveEnter, InactiveExit   time.Time
	MainPID, ExecMainPID          uint32
	ExecMainCode                  int32 // CLD_* code of the main process's end; 0 while it runs
	ExecMainStatus                int32 // exit status or signal number
	Comm                          string
}

func statusPropsFromUnit(name string, props map[string]any) statusProps {
	p := statusProps{
		ID:            propString(props, "Id"),
		Description:   propString(props, "Description"),
		LoadState:     propString(props, "LoadState"),
		FragmentPath:  propString(props, "FragmentPath"),
		UnitFileState: propString(props, "UnitFileState"),
		// UnitFilePreset is newer than some systemd versions; "" then.
		UnitFilePreset: propString(props, "UnitFilePreset"),
		ActiveState:    propString(props, "ActiveState"),
		SubState:       propString(props, "SubState"),
		ActiveEnter:    propTime(props, "ActiveEnterTimestamp"),
		ActiveExit:     propTime(props, "ActiveExitTimestamp"),
		InactiveEnter:  propTime(props, "InactiveEnterTimestamp"),
		InactiveExit:   propTime(props, "InactiveExitTimestamp"),
	}
	if p.ID == "" {
		p.ID = name
	}
	if p.FragmentPath == "" {
		p.FragmentPath = propString(props, "SourcePath")
	}
	// LoadError is (error name, message); the name is "" without an error.
	if le, ok := props["LoadError"].([]any); ok && len(le) == 2 {
		if n, _ := le[0].(string); n != "" {
			p.LoadErrorMessage, _ = le[1].(string)
		}
	}
	return p
}

func (p *statusProps) addTypeProps(props map[string]any) {
	p.Result = propString(props, "Result")
	p.MainPID, _ = props["MainPID"].(uint32)
	p.ExecMainPID, _ = props["ExecMainPID"].(uint32)
	p.ExecMainCode, _ = props["ExecMainCode"].(int32)
	p.ExecMainStatus, _ = props["ExecMainStatus"].(int32)
}

func propString(props map[string]any, key string) string {
	s, _ := props[key].(string)
	return s
}

// propTime converts a realtime timestamp in microseconds; 0 means none.
func propTime(props map[string]any, key string) time.Time {
	us, _ := props[key].(uint64)
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(us))
}

// Child end codes (CLD_* of waitid) systemd reports in ExecMainCode.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// formatStatus lays p out as `systemctl status` does (systemd 252), up to
// the main PID line. now is the time "ago" is measured from; times print
// in their own location.
func formatStatus(p statusProps, now time.Time) string {
	if p.LoadState == "not-found" && p.ActiveState == "inactive" {
		return "Unit " + p.ID + " could not be found.\n"
	}
	var b strings.Builder
	b.WriteString(activeGlyph(p.ActiveState) + " " + p.ID)
	if p.Description != "" && p.Description != p.ID {
		b.WriteString(" - " + p.Description)
	}
	b.WriteString("\n     Loaded: " + loadedText(p) + "\n")
	b.WriteString("     Active: " + activeText(p, now) + "\n")
	if line := mainPIDText(p); line != "" {
		b.WriteString("   Main PID: " + line + "\n")
	}
	return b.String()
}

// activeGlyph is the symbol systemctl puts before a unit in that state.
func activeGlyph(active string) string {
	switch active {
	case "active", "activating", "deactivating":
		return "●"
	case "reloading":
		return "↻"
	case "failed":
		return "×"
	}
	return "○"
}

func loadedText(p statusProps) string {
	state := p.LoadState
	switch {
	case p.LoadErrorMessage != "":
		return state + " (Reason: " + p.LoadErrorMessage + ")"
	case p.FragmentPath != "" && p.UnitFileState != "":
		s := state + " (" + p.FragmentPath + "; " + p.UnitFileState
		if p.UnitFilePreset != "" && showPreset(p.UnitFileState) {
			s += "; preset: " + p.UnitFilePreset
		}
		return s + ")"
	case p.FragmentPath != "":
		return state + " (" + p.FragmentPath + ")"
	}
	return state
}

// showPreset says whether systemctl shows the preset next to a unit file
// state: not for states where it would only confuse.
func showPreset(fileState string) bool {
	switch fileState {
	case "alias", "static", "generated", "transient":
		return false
	}
	return true
}

func activeText(p statusProps, now time.Time) string {
	s := p.ActiveState
	switch {
	case p.ActiveState == "failed" && p.Result != "" && p.Result != "success":
		s += " (Result: " + p.Result + ")"
	case p.SubState != "" && p.SubState != p.ActiveState:
		s += " (" + p.SubState + ")"
	}
	var since time.Time
	switch p.ActiveState {
	case "active", "reloading":
		since = p.ActiveEnter
	case "inactive", "failed":
		since = p.InactiveEnter
	case "activating":
		since = p.InactiveExit
	default:
		since = p.ActiveExit
	}
	if !since.IsZero() {
		s += " since " + since.Format("Mon 2006-01-02 15:04:05 MST") + "; " + relativeTime(since, now)
	}
	return s
}

func mainPIDText(p statusProps) string {
	pid, running := p.MainPID, p.MainPID > 0
	if !running {
		pid = p.ExecMainPID
	}
	if pid == 0 {
		return ""
	}
	s := strconv.FormatUint(uint64(pid), 10)
	switch {
	case running && p.Comm != "":
		s += " (" + p.Comm + ")"
	case !running && p.ExecMainCode == cldExited:
		s += " (code=exited, status=" + exitStatusText(p.ExecMainStatus) + ")"
	case !running && (p.ExecMainCode == cldKilled || p.ExecMainCode == cldDumped):
		code := "killed"
		if p.ExecMainCode == cldDumped {
			code = "dumped"
		}
		s += " (code=" + code + ", signal=" + signalName(p.ExecMainStatus) + ")"
	}
	return s
}

// exitStatusNames are the names systemd gives exit statuses (the LSB ones
// and systemd's own most common ones).
var exitStatusNames = map[int32]string{
	0: "SUCCESS", 1: "FAILURE", 2: "INVALIDARGUMENT", 3: "NOTIMPLEMENTED", 4: "NOPERMISSION",
	5: "NOTINSTALLED", 6: "NOTCONFIGURED", 7: "NOTRUNNING",
	200: "CHDIR", 201: "NICE", 202: "FDS", 203: "EXEC", 204: "MEMORY", 205: "LIMITS", 206: "OOM_ADJUST",
	207: "SIGNAL_MASK", 208: "STDIN", 209: "STDOUT", 210: "CHROOT", 211: "IOPRIO", 212: "TIMERSLACK",
	213: "SECUREBITS", 214: "SETSCHEDULER", 215: "CPUAFFINITY", 216: "GROUP", 217: "USER",
	218: "CAPABILITIES", 219: "CGROUP", 220: "SETSID", 221: "CONFIRM", 222: "STDERR", 224: "PAM",
	225: "NETWORK", 226: "NAMESPACE", 227: "NO_NEW_PRIVILEGES", 228: "SECCOMP", 229: "SELINUX_CONTEXT",
	230: "PERSONALITY", 231: "APPARMOR", 232: "ADDRESS_FAMILIES", 233: "RUNTIME_DIRECTORY",
	235: "CHOWN", 236: "SMACK_PROCESS_LABEL", 237: "KEYRING", 238: "STATE_DIRECTORY",
	239: "CACHE_DIRECTORY", 240: "LOGS_DIRECTORY", 241: "CONFIGURATION_DIRECTORY",
	242: "NUMA_POLICY", 243: "CREDENTIALS", 245: "BPF",
}

func exitStatusText(status int32) string {
	s := strconv.Itoa(int(status))
	if n, ok := exitStatusNames[status]; ok {
		s += "/" + n
	}
	return s
}

// signalNames are Linux signal names without the SIG prefix, by number.
var signalNames = [...]string{
	1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 5: "TRAP", 6: "ABRT", 7: "BUS", 8: "FPE", 9: "KILL",
	10: "USR1", 11: "SEGV", 12: "USR2", 13: "PIPE", 14: "ALRM", 15: "TERM", 16: "STKFLT", 17: "CHLD",
	18: "CONT", 19: "STOP", 20: "TSTP", 21: "TTIN", 22: "TTOU", 23: "URG", 24: "XCPU", 25: "XFSZ",
	26: "VTALRM", 27: "PROF", 28: "WINCH", 29: "IO", 30: "PWR", 31: "SYS",
}

func signalName(sig int32) string {
	if sig > 0 && int(sig) < len(signalNames) {
		return signalNames[sig]
	}
	return strconv.Itoa(int(sig))
}

// Calendar lengths systemd uses for relative times.
const (
	week  = 7 * 24 * time.Hour
	month = 2629800 * time.Second  // 30.44 days
	year  = 31557600 * time.Second // 365.25 days
)

// relativeTime says how long before (or after) now t is, as systemd says it:
// "5s ago", "1min 30s ago", "3 days ago", "2h 5min left".
func relativeTime(t, now time.Time) string {
	d, suffix := now.Sub(t), " ago"
	if d < 0 {
		d, suffix = -d, " left"
	}
	plural := func(n int64, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(n, 10) + " " + many
	}
	var s string
	switch {
	case d >= year:
		s = plural(int64(d/year), "year", "years") + " " + plural(int64(d%year/month), "month", "months")
	case d >= month:
		s = plural(int64(d/month), "month", "months") + " " + plural(int64(d%month/(24*time.Hour)), "day", "days")
	case d >= week:
		s = plural(int64(d/week), "week", "weeks") + " " + plural(int64(d%week/(24*time.Hour)), "day", "days")
	case d >= 2*24*time.Hour:
		s = plural(int64(d/(24*time.Hour)), "day", "days")
	case d >= 25*time.Hour:
		s = fmt.Sprintf("1 day %dh", (d-24*time.Hour)/time.Hour)
	case d >= 6*time.Hour:
		s = fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Hour:
		s = fmt.Sprintf("%dh %dmin", d/time.Hour, d%time.Hour/time.Minute)
	case d >= 5*time.Minute:
		s = fmt.Sprintf("%dmin", d/time.Minute)
	case d >= time.Minute:
		s = fmt.Sprintf("%dmin %ds", d/time.Minute, d%time.Minute/time.Second)
	case d >= time.Second:
		s = fmt.Sprintf("%ds", d/time.Second)
	case d >= time.Millisecond:
		s = fmt.Sprintf("%dms", d/time.Millisecond)
	case d > 0:
		s = fmt.Sprintf("%dus", d/time.Microsecond)
	default:
		return "now"
	}
	return s + suffix
}
