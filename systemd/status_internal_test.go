package systemd

import (
	"slices"
	"testing"
	"time"
)

func TestFormatStatus(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 5, 0, time.UTC)
	started := now.Add(-5 * time.Second)
	tests := []struct {
		name string
		p    statusProps
		want string
	}{
		{
			name: "running service",
			p: statusProps{ID: "hello.service", Description: "Hello", LoadState: "loaded",
				FragmentPath: "/run/user/0/systemd/user/hello.service", UnitFileState: "linked-runtime",
				UnitFilePreset: "enabled", ActiveState: "active", SubState: "running", ActiveEnter: started,
				MainPID: 1234, Comm: "sleep"},
			want: "● hello.service - Hello\n" +
				"     Loaded: loaded (/run/user/0/systemd/user/hello.service; linked-runtime; preset: enabled)\n" +
				"     Active: active (running) since Fri 2026-11-27 12:00:00 UTC; 5s ago\n" +
				"   Main PID: 1234 (sleep)\n",
		},
		{
			name: "failed service shows the result and how the main process ended",
			p: statusProps{ID: "bad.service", Description: "Bad", LoadState: "loaded",
				FragmentPath: "/run/fleet/units/bad.service", UnitFileState: "linked-runtime",
				UnitFilePreset: "enabled", ActiveState: "failed", SubState: "failed", Result: "exit-code",
				InactiveEnter: now.Add(-90 * time.Second), ExecMainPID: 77, ExecMainCode: cldExited, ExecMainStatus: 1},
			want: "× bad.service - Bad\n" +
				"     Loaded: loaded (/run/fleet/units/bad.service; linked-runtime; preset: enabled)\n" +
				"     Active: failed (Result: exit-code) since Fri 2026-11-27 11:58:35 UTC; 1min 30s ago\n" +
				"   Main PID: 77 (code=exited, status=1/FAILURE)\n",
		},
		{
			name: "killed main process names the signal",
			p: statusProps{ID: "k.service", LoadState: "loaded", ActiveState: "failed", SubState: "failed",
				Result: "signal", ExecMainPID: 9, ExecMainCode: cldKilled, ExecMainStatus: 9},
			want: "× k.service\n" +
				"     Loaded: loaded\n" +
				"     Active: failed (Result: signal)\n" +
				"   Main PID: 9 (code=killed, signal=KILL)\n",
		},
		{
			name: "inactive unit without timestamps or PID",
			p: statusProps{ID: "idle.service", Description: "idle.service", LoadState: "loaded",
				FragmentPath: "/x/idle.service", UnitFileState: "static", UnitFilePreset: "enabled",
				ActiveState: "inactive", SubState: "dead"},
			want: "○ idle.service\n" +
				"     Loaded: loaded (/x/idle.service; static)\n" +
				"     Active: inactive (dead)\n",
		},
		{
			name: "activating since the inactive state was left",
			p: statusProps{ID: "a.service", LoadState: "loaded", FragmentPath: "/x/a.service",
				ActiveState: "activating", SubState: "start-pre", InactiveExit: now.Add(-2 * time.Hour)},
			want: "● a.service\n" +
				"     Loaded: loaded (/x/a.service)\n" +
				"     Active: activating (start-pre) since Fri 2026-11-27 10:00:05 UTC; 2h 0min ago\n",
		},
		{
			name: "load error gives the reason",
			p: statusProps{ID: "broken.service", LoadState: "bad-setting", ActiveState: "inactive", SubState: "dead",
				LoadErrorMessage: "Unit broken.service has a bad unit file setting."},
			want: "○ broken.service\n" +
				"     Loaded: bad-setting (Reason: Unit broken.service has a bad unit file setting.)\n" +
				"     Active: inactive (dead)\n",
		},
		{
			name: "unknown unit",
			p:    statusProps{ID: "nope.service", LoadState: "not-found", ActiveState: "inactive", SubState: "dead"},
			want: "Unit nope.service could not be found.\n",
		},
		{
			name: "running main process whose name is unknown",
			p: statusProps{ID: "r.service", LoadState: "loaded", ActiveState: "reloading", SubState: "reload",
				ActiveEnter: started, MainPID: 5},
			want: "↻ r.service\n" +
				"     Loaded: loaded\n" +
				"     Active: reloading (reload) since Fri 2026-11-27 12:00:00 UTC; 5s ago\n" +
				"   Main PID: 5\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatStatus(tc.p, now); got != tc.want {
				t.Errorf("formatStatus:\ngot:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestRelativeTime(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name string
		ago  time.Duration
		want string
	}{
		{"same instant", 0, "now"},
		{"microseconds", 250 * time.Microsecond, "250us ago"},
		{"milliseconds", 20 * time.Millisecond, "20ms ago"},
		{"seconds", 59 * time.Second, "59s ago"},
		{"minutes and seconds", 4*time.Minute + 2*time.Second, "4min 2s ago"},
		{"minutes only from five on", 17*time.Minute + 40*time.Second, "17min ago"},
		{"hours and minutes", 5*time.Hour + 59*time.Minute, "5h 59min ago"},
		{"hours only from six on", 23 * time.Hour, "23h ago"},
		{"a day and hours", 26 * time.Hour, "1 day 2h ago"},
		{"days", 3*day + 5*time.Hour, "3 days ago"},
		{"weeks and days", 9 * day, "1 week 2 days ago"},
		{"months and days", 75 * day, "2 months 14 days ago"},
		{"years and months", 800 * day, "2 years 2 months ago"},
		{"future", -90 * time.Second, "1min 30s left"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := relativeTime(now.Add(-tc.ago), now); got != tc.want {
				t.Errorf("relativeTime(-%v) = %q, want %q", tc.ago, got, tc.want)
			}
		})
	}
}

func TestStatusPropsFromDBus(t *testing.T) {
	unitProps := map[string]any{
		"Id": "x.service", "Description": "X", "LoadState": "loaded", "FragmentPath": "",
		"SourcePath": "/etc/init.d/x", "UnitFileState": "generated", "ActiveState": "active", "SubState": "running",
		"ActiveEnterTimestamp": uint64(1_700_000_000_000_000), "InactiveEnterTimestamp": uint64(0),
		"LoadError": []any{"", ""},
	}
	p := statusPropsFromUnit("x.service", unitProps)
	p.addTypeProps(map[string]any{"MainPID": uint32(42), "ExecMainPID": uint32(42), "ExecMainCode": int32(0),
		"ExecMainStatus": int32(0), "Result": "success"})
	want := statusProps{ID: "x.service", Description: "X", LoadState: "loaded", FragmentPath: "/etc/init.d/x",
		UnitFileState: "generated", ActiveState: "active", SubState: "running",
		ActiveEnter: time.UnixMicro(1_700_000_000_000_000), MainPID: 42, ExecMainPID: 42, Result: "success"}
	if p != want {
		t.Errorf("props = %+v\nwant    %+v", p, want)
	}

	missing := statusPropsFromUnit("nope.service", map[string]any{"LoadState": "not-found",
		"LoadError": []any{"org.freedesktop.systemd1.NoSuchUnit", "Unit nope.service not found."}})
	if missing.ID != "nope.service" || missing.LoadErrorMessage != "Unit nope.service not found." {
		t.Errorf("unknown unit props = %+v", missing)
	}
}

func TestUnitTypeInterface(t *testing.T) {
	tests := []struct{ name, want string }{
		{"a.service", "Service"},
		{"b@1.socket", "Socket"},
		{"c.timer", "Timer"},
		{"d.weird", ""},
		{"noext", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := unitTypeInterface(tc.name); got != tc.want {
				t.Errorf("unitTypeInterface(%q) = %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}

func TestJournalArgs(t *testing.T) {
	tests := []struct {
		name string
		opts JournalOptions
		user bool
		want []string
	}{
		{"system defaults", JournalOptions{}, false, []string{"--no-pager", "--unit=a.service"}},
		{"user unit", JournalOptions{}, true, []string{"--no-pager", "--user-unit=a.service"}},
		{"lines output follow", JournalOptions{Lines: 25, Output: "json", Follow: true}, false,
			[]string{"--no-pager", "--unit=a.service", "--lines=25", "--output=json", "--follow"}},
		{"quiet", JournalOptions{Lines: 10, Quiet: true}, true,
			[]string{"--no-pager", "--user-unit=a.service", "--lines=10", "--quiet"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := journalArgs("a.service", tc.opts, tc.user); !slices.Equal(got, tc.want) {
				t.Errorf("journalArgs = %q, want %q", got, tc.want)
			}
		})
	}
}
