package fleetctl

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/registry/registrytest"
)

const helloUnit = "[Unit]\nDescription=Hello World\n\n[Service]\nExecStart=/bin/sleep 1000\n"

// TestMainParsing covers the command line itself: commands, flags,
// argument counts and the exit status each outcome maps to.
func TestMainParsing(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring
		wantStderr string // substring
	}{
		{name: "no arguments prints help with version", args: nil, wantCode: ExitOK,
			wantStdout: "VERSION:\n\t1.2.3\n"},
		{name: "help flag", args: []string{"--help"}, wantCode: ExitOK, wantStdout: "GLOBAL OPTIONS:"},
		{name: "help command for a command", args: []string{"help", "cat"}, wantCode: ExitOK,
			wantStdout: "NAME:\n\tfleetctl cat - "},
		{name: "command help flag", args: []string{"list-units", "-h"}, wantCode: ExitOK, wantStdout: "--no-legend"},
		{name: "version command", args: []string{"version"}, wantCode: ExitOK, wantStdout: "fleetctl version 1.2.3\n"},
		{name: "version flag", args: []string{"--version"}, wantCode: ExitOK, wantStdout: "fleetctl version 1.2.3\n"},
		{name: "version shorthand", args: []string{"-v"}, wantCode: ExitOK, wantStdout: "fleetctl version 1.2.3\n"},
		{name: "unknown command", args: []string{"nosuch"}, wantCode: ExitUsage,
			wantStderr: `Error: unknown command "nosuch" for "fleetctl"`},
		{name: "ambiguous prefix", args: []string{"s", "x"}, wantCode: ExitUsage, wantStderr: "unknown command"},
		{name: "unambiguous prefix selects command", args: []string{"list-m"}, wantCode: ExitOK,
			wantStdout: "113f16a7...\t" + testIP},
		{name: "unknown help topic", args: []string{"help", "nosuch"}, wantCode: ExitUsage,
			wantStderr: `unknown help topic "nosuch"`},
		{name: "unknown long flag", args: []string{"list-units", "--bogus"}, wantCode: ExitUsage,
			wantStderr: "unknown flag: --bogus"},
		{name: "unknown shorthand flag", args: []string{"list-units", "-x"}, wantCode: ExitUsage,
			wantStderr: "unknown shorthand flag"},
		{name: "unknown global flag", args: []string{"--bogus", "list-units"}, wantCode: ExitUsage,
			wantStderr: "unknown flag: --bogus"},
		{name: "-l is --full", args: []string{"list-machines", "-l"}, wantCode: ExitOK,
			wantStdout: testMachine + "\t" + testIP},
		{name: "--l is --full", args: []string{"list-machines", "--l"}, wantCode: ExitOK,
			wantStdout: testMachine + "\t" + testIP},
		{name: "--full", args: []string{"list-machines", "--full"}, wantCode: ExitOK,
			wantStdout: testMachine + "\t" + testIP},
		{name: "list-unit-files has no -l", args: []string{"list-unit-files", "-l"}, wantCode: ExitUsage,
			wantStderr: "unknown shorthand flag: 'l'"},
		{name: "list takes no arguments", args: []string{"list-units", "extra"}, wantCode: ExitUsage,
			wantStderr: `takes no arguments, got "extra"`},
		{name: "cat without unit", args: []string{"cat"}, wantCode: ExitUsage,
			wantStderr: "One unit file must be provided"},
		{name: "cat with two units", args: []string{"cat", "a", "b"}, wantCode: ExitUsage,
			wantStderr: "One unit file must be provided"},
		{name: "submit without units", args: []string{"submit"}, wantCode: ExitUsage, wantStderr: "No units given"},
		{name: "start without units", args: []string{"start", "--no-block"}, wantCode: ExitUsage,
			wantStderr: "No units given"},
		{name: "negative block attempts", args: []string{"start", "--block-attempts=-1", "x"}, wantCode: ExitUsage,
			wantStderr: "--block-attempts must not be negative"},
		{name: "block attempts not a number", args: []string{"stop", "--block-attempts=many", "x"},
			wantCode: ExitUsage, wantStderr: "invalid argument"},
		{name: "empty fields", args: []string{"list-units", "--fields="}, wantCode: ExitError,
			wantStderr: "Must define output format\n"},
		{name: "invalid field", args: []string{"list-machines", "--fields=machine,foo"}, wantCode: ExitError,
			wantStderr: "Invalid key in output format: \"foo\"\n"},
		{name: "deprecated tmachine field warns", args: []string{"list-unit-files", "--fields=unit,tmachine"},
			wantCode: ExitOK, wantStderr: `WARNING: The "tmachine" field is deprecated. Use "target" instead`},
		{name: "bad request timeout", args: []string{"--request-timeout=soon", "list-units"}, wantCode: ExitUsage,
			wantStderr: "want seconds (3.0) or a duration (3s)"},
		{name: "deprecated TLS flag spelling", args: []string{"--etcd-cafile=/nonexistent/ca.pem", "list-units"},
			wantCode: ExitError, wantStderr: "Unable to initialize client: read CA file"},
		{name: "key without certificate", args: []string{"--key-file=/k.pem", "list-units"},
			wantCode: ExitError, wantStderr: "--key-file and --cert-file must be given together"},
		{name: "help lists the SSH flags", args: []string{"--help"}, wantCode: ExitOK,
			wantStdout: "--strict-host-key-checking"},
		{name: "help lists restart", args: []string{"help"}, wantCode: ExitOK, wantStdout: "\trestart\t"},
		{name: "bad ssh timeout", args: []string{"--ssh-timeout=soon", "list-units"}, wantCode: ExitUsage,
			wantStderr: "want seconds (3.0) or a duration (3s)"},
		{name: "restart without units", args: []string{"restart"}, wantCode: ExitUsage, wantStderr: "No units given"},
		{name: "negative block attempts on restart", args: []string{"restart", "--block-attempts=-2", "x"},
			wantCode: ExitUsage, wantStderr: "--block-attempts must not be negative"},
		{name: "restart has no no-block", args: []string{"restart", "--no-block", "x"}, wantCode: ExitUsage,
			wantStderr: "unknown flag: --no-block"},
		{name: "journal -f and -n", args: []string{"journal", "-f", "-n", "5"}, wantCode: ExitUsage,
			wantStderr: "One unit file must be provided."},
		{name: "journal --f", args: []string{"journal", "--f"}, wantCode: ExitUsage,
			wantStderr: "One unit file must be provided."},
		{name: "ssh --A", args: []string{"ssh", "--A", "--machine=zzz"}, wantCode: ExitError,
			wantStderr: "could not find matching machine"},
		{name: "completion for bash", args: []string{"completion", "bash"}, wantCode: ExitOK,
			wantStdout: "# bash completion V2 for fleetctl"},
		{name: "completion for zsh", args: []string{"completion", "zsh"}, wantCode: ExitOK, wantStdout: "#compdef fleetctl"},
		{name: "completion for fish", args: []string{"completion", "fish"}, wantCode: ExitOK,
			wantStdout: "complete -c fleetctl"},
	}
	c := newSimCluster(t, registrytest.StartEtcd(t), clusterOptions{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runFleetctl(t, c, run{args: tc.args})
			if res.code != tc.wantCode {
				t.Errorf("exit status = %d, want %d (stderr %q)", res.code, tc.wantCode, res.stderr)
			}
			if !strings.Contains(res.stdout, tc.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", res.stdout, tc.wantStdout)
			}
			if !strings.Contains(res.stderr, tc.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", res.stderr, tc.wantStderr)
			}
			if tc.wantCode != ExitOK && strings.Count(res.stderr, "\n") == 0 {
				t.Errorf("failure printed nothing on stderr")
			}
		})
	}
}

func TestGlobalFlagsFromEnvironment(t *testing.T) {
	tests := []struct {
		name         string
		env          map[string]string
		args         []string
		wantEndpoint string
		wantTimeout  time.Duration
		wantDebug    bool
		wantStderr   string
	}{
		{name: "defaults", wantEndpoint: defaultEndpoint, wantTimeout: 3 * time.Second},
		{name: "endpoint from environment", env: map[string]string{"FLEETCTL_ENDPOINT": "http://127.0.0.1:4002"},
			wantEndpoint: "http://127.0.0.1:4002", wantTimeout: 3 * time.Second},
		{name: "flag wins over environment", env: map[string]string{"FLEETCTL_ENDPOINT": "http://127.0.0.1:4002"},
			args: []string{"--endpoint=unix:///run/other.sock"}, wantEndpoint: "unix:///run/other.sock",
			wantTimeout: 3 * time.Second},
		{name: "first of several endpoints", args: []string{"--endpoint=http://127.0.0.1:1,http://127.0.0.1:2"},
			wantEndpoint: "http://127.0.0.1:1", wantTimeout: 3 * time.Second,
			wantStderr: "WARNING: multiple endpoints given, only the first one is used: http://127.0.0.1:1\n"},
		{name: "timeout in seconds from environment", env: map[string]string{"FLEETCTL_REQUEST_TIMEOUT": "1.5"},
			wantEndpoint: defaultEndpoint, wantTimeout: 1500 * time.Millisecond},
		{name: "timeout as duration flag", args: []string{"--request-timeout=10s"},
			wantEndpoint: defaultEndpoint, wantTimeout: 10 * time.Second},
		{name: "debug from environment", env: map[string]string{"FLEETCTL_DEBUG": "true"},
			wantEndpoint: defaultEndpoint, wantTimeout: 3 * time.Second, wantDebug: true},
		{name: "subcommand flag not read from environment", env: map[string]string{"FLEETCTL_FIELDS": "bogus"},
			wantEndpoint: defaultEndpoint, wantTimeout: 3 * time.Second},
		{name: "driver from environment", env: map[string]string{"FLEETCTL_DRIVER": "API"},
			wantEndpoint: defaultEndpoint, wantTimeout: 3 * time.Second},
	}
	c := newSimCluster(t, registrytest.StartEtcd(t), clusterOptions{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string(nil), tc.args...), "list-machines")
			env := map[string]string{"FLEETCTL_ENDPOINT": ""}
			for k, v := range tc.env {
				env[k] = v
			}
			res := runFleetctl(t, c, run{env: env, redirect: true, args: args})
			if res.code != ExitOK {
				t.Fatalf("exit status = %d, stderr %q", res.code, res.stderr)
			}
			if res.endpoint != tc.wantEndpoint {
				t.Errorf("endpoint = %q, want %q", res.endpoint, tc.wantEndpoint)
			}
			if res.opts.Timeout != tc.wantTimeout {
				t.Errorf("request timeout = %v, want %v", res.opts.Timeout, tc.wantTimeout)
			}
			debug := res.opts.Logger != nil && res.opts.Logger.Enabled(context.Background(), slog.LevelDebug)
			if debug != tc.wantDebug {
				t.Errorf("debug logging = %v, want %v", debug, tc.wantDebug)
			}
			switch {
			case tc.wantDebug && !strings.Contains(res.stderr, `level=DEBUG msg="api call" method=GET`):
				t.Errorf("stderr = %q, want the API calls logged", res.stderr)
			case !tc.wantDebug && res.stderr != tc.wantStderr:
				t.Errorf("stderr = %q, want %q", res.stderr, tc.wantStderr)
			}
		})
	}
}

// TestGlobalFlagsFromEnvironmentRefused checks the FLEETCTL_* values that
// stop a command.
func TestGlobalFlagsFromEnvironmentRefused(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		wantCode   int
		wantStderr string
	}{
		{name: "etcd driver", env: map[string]string{"FLEETCTL_DRIVER": "etcd"}, wantCode: ExitError,
			wantStderr: "Unable to initialize client: the etcd driver is unsupported: " +
				"fleetctl only talks to the fleet API (--driver=API, --endpoint)\n"},
		{name: "bad boolean", env: map[string]string{"FLEETCTL_STRICT_HOST_KEY_CHECKING": "maybe"}, wantCode: ExitUsage,
			wantStderr: "Error: invalid value \"maybe\" for FLEETCTL_STRICT_HOST_KEY_CHECKING: " +
				"strconv.ParseBool: parsing \"maybe\": invalid syntax\nRun 'fleetctl list-machines --help' for usage.\n"},
		{name: "bad ssh timeout", env: map[string]string{"FLEETCTL_SSH_TIMEOUT": "-1"}, wantCode: ExitUsage,
			wantStderr: "Error: invalid value \"-1\" for FLEETCTL_SSH_TIMEOUT: parse \"-1\": must be positive\n" +
				"Run 'fleetctl list-machines --help' for usage.\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runFleetctl(t, nil, run{env: tc.env, args: []string{"list-machines"}})
			if res.code != tc.wantCode || res.stderr != tc.wantStderr || res.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", res.code, res.stdout, res.stderr, tc.wantCode, tc.wantStderr)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	tests := []struct{ flag, want string }{
		{"endpoint", "FLEETCTL_ENDPOINT"},
		{"request-timeout", "FLEETCTL_REQUEST_TIMEOUT"},
		{"strict-host-key-checking", "FLEETCTL_STRICT_HOST_KEY_CHECKING"},
	}
	for _, tc := range tests {
		t.Run(tc.flag, func(t *testing.T) {
			if got := envName(tc.flag); got != tc.want {
				t.Errorf("envName(%q) = %q, want %q", tc.flag, got, tc.want)
			}
		})
	}
}

func TestDurationValue(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{name: "fleet seconds", in: "3.0", want: 3 * time.Second},
		{name: "fractional seconds", in: "0.25", want: 250 * time.Millisecond},
		{name: "integer seconds", in: "7", want: 7 * time.Second},
		{name: "go duration", in: "1m30s", want: 90 * time.Second},
		{name: "zero", in: "0", wantErr: true},
		{name: "negative", in: "-1s", wantErr: true},
		{name: "garbage", in: "soon", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := time.Hour
			err := durationValue{&d}.Set(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Set(%q) = nil error, value %v", tc.in, d)
				}
				if d != time.Hour {
					t.Errorf("failed Set(%q) changed the value to %v", tc.in, d)
				}
				return
			}
			if err != nil || d != tc.want {
				t.Errorf("Set(%q) = %v, %v; want %v", tc.in, d, err, tc.want)
			}
		})
	}
}

func TestAddPrefixAliases(t *testing.T) {
	root := newCLI(Deps{}).rootCommand()
	tests := []struct {
		arg  string
		want string // command name; "" for no match
	}{
		{arg: "list-m", want: "list-machines"},
		{arg: "list-units", want: "list-units"},
		{arg: "list-unit-", want: "list-unit-files"},
		{arg: "list-unit", want: ""},
		{arg: "sta", want: ""},
		{arg: "star", want: "start"},
		{arg: "sto", want: "stop"},
		{arg: "su", want: "submit"},
		{arg: "s", want: ""},
		{arg: "d", want: "destroy"},
		{arg: "v", want: "version"},
		{arg: "ver", want: "version"},
		{arg: "verify", want: "verify"},
		{arg: "c", want: ""},
		{arg: "ca", want: "cat"},
		{arg: "co", want: "completion"},
		{arg: "r", want: "restart"},
		{arg: "j", want: "journal"},
		{arg: "ss", want: "ssh"},
		{arg: "stat", want: "status"},
		{arg: "f", want: "fd-forward"},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			cmd, rest, err := root.Find([]string{tc.arg})
			if err != nil {
				t.Fatalf("Find(%q): %v", tc.arg, err)
			}
			got := cmd.Name()
			if len(rest) > 0 || !cmd.HasParent() {
				got = ""
			}
			if got != tc.want {
				t.Errorf("Find(%q) = %q, want %q", tc.arg, got, tc.want)
			}
		})
	}
}
