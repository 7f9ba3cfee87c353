package unit

import (
	"crypto/sha1"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	gsunit "github.com/coreos/go-systemd/v22/unit"
)

// goSystemdParse parses text with go-systemd's deserializer.
func goSystemdParse(t testing.TB, text string) ([]Option, error) {
	t.Helper()
	gs, err := gsunit.DeserializeOptions(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	opts := make([]Option, len(gs))
	for i, o := range gs {
		opts[i] = Option{Section: o.Section, Name: o.Name, Value: o.Value}
	}
	return opts, nil
}

// goSystemdSerialize serializes opts with go-systemd.
func goSystemdSerialize(t testing.TB, opts []Option) string {
	t.Helper()
	gs := make([]*gsunit.UnitOption, len(opts))
	for i, o := range opts {
		gs[i] = gsunit.NewUnitOption(o.Section, o.Name, o.Value)
	}
	b, err := io.ReadAll(gsunit.Serialize(gs))
	if err != nil {
		t.Fatalf("go-systemd serialize: %v", err)
	}
	return string(b)
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("x", maxLine)
	tests := []struct {
		name     string
		text     string
		sentinel error  // errors.Is target, if any
		contains string // substring of the message otherwise
		gsErr    bool   // go-systemd also refuses the text
	}{
		{name: "empty", text: "", sentinel: ErrEmpty},
		{name: "only whitespace", text: " \n\t\r\n", sentinel: ErrEmpty},
		{name: "not a unit file", text: "hello world\nthis is plain text\n", sentinel: ErrNoOptions},
		{name: "only comments", text: "# one\n; two\n", sentinel: ErrNoOptions},
		{name: "section without options", text: "[Unit]\n\n[Service]\n", sentinel: ErrNoOptions},
		{name: "unterminated section", text: "[Unit\nDescription=x\n", contains: "unable to find end of section", gsErr: true},
		{name: "garbage after section", text: "[Unit] trailing\nDescription=x\n", contains: "found garbage after section name", gsErr: true},
		{name: "option without equals", text: "[Unit]\nDescription\nAfter=x\n", contains: "unexpected newline", gsErr: true},
		{name: "option name cut by CR", text: "[Unit]\nDescr\ription=x\n", contains: "unexpected newline", gsErr: true},
		{name: "option at end of file", text: "[Unit]\nDescription", contains: "unexpected end of file", gsErr: true},
		{name: "line too long in value", text: "[Unit]\nDescription=" + long + "\n", sentinel: ErrLineTooLong, gsErr: true},
		// go-systemd checks only what it has buffered, and misses this one.
		{name: "line too long before section", text: long + "\n[Unit]\nA=b\n", sentinel: ErrLineTooLong},
		{name: "line too long in comment", text: "[Unit]\n#" + long + "\nA=b\n", sentinel: ErrLineTooLong, gsErr: true},
		{name: "line too long without newline", text: "[Unit]\nA=b\n" + long, sentinel: ErrLineTooLong, gsErr: true},
		// go-systemd would replace the bytes with U+FFFD: the unit stored
		// would not be the unit written.
		{name: "invalid UTF-8 in a name", text: "[Unit]\nA\xffB=1\n", contains: `option name "A\xffB" is not valid UTF-8`},
		{name: "long invalid UTF-8 name is clipped", text: "[Unit]\n" + strings.Repeat("\xff", 700) + "=1\n",
			contains: `option name "` + strings.Repeat(`\xff`, 64) + `..." is not valid UTF-8`},
		{name: "backslash at end of file", text: "[Service]\nExecStart=/bin/true \\", contains: "ends in a backslash"},
		{name: "space after backslash", text: "[Service]\nExecStart=/bin/true \\ \nUser=nobody\n", contains: "ends in a backslash"},
		{name: "backslash before CRLF", text: "[Service]\r\nExecStart=/bin/true \\\r\n", contains: "ends in a backslash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.text)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tc.text, f.Options)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Fatalf("Parse error = %q, want %q", err, tc.sentinel)
			}
			if tc.contains != "" && !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("Parse error = %q, want it to contain %q", err, tc.contains)
			}
			if _, gsErr := goSystemdParse(t, tc.text); (gsErr != nil) != tc.gsErr {
				t.Fatalf("go-systemd error = %v, want error: %v", gsErr, tc.gsErr)
			}
		})
	}
}

func TestErrLineTooLongText(t *testing.T) {
	if got, want := ErrLineTooLong.Error(), "line too long (max 2048 bytes)"; got != want {
		t.Fatalf("ErrLineTooLong = %q, want %q", got, want)
	}
	if ErrLineTooLong.Error() != gsunit.ErrLineTooLong.Error() {
		t.Fatalf("ErrLineTooLong = %q, go-systemd says %q", ErrLineTooLong, gsunit.ErrLineTooLong)
	}
}

func TestParseLineLengthBoundary(t *testing.T) {
	prefix := "[Unit]\nDescription="
	tests := []struct {
		name    string
		text    string
		wantErr bool
	}{
		{name: "2047 bytes then newline", text: prefix + strings.Repeat("x", maxLine-1-len("Description=")) + "\n"},
		{name: "2048 bytes then newline", text: prefix + strings.Repeat("x", maxLine-len("Description=")) + "\n", wantErr: true},
		{name: "2047 bytes at end of file", text: prefix + strings.Repeat("x", maxLine-1-len("Description="))},
		{name: "2048 bytes at end of file", text: prefix + strings.Repeat("x", maxLine-len("Description=")), wantErr: true},
		{name: "CR splits lines", text: prefix + strings.Repeat("x", 2000) + "\r" + strings.Repeat("y", 2000) + "\n"},
		{name: "long value over continuation lines", text: prefix + strings.Repeat("x", 2000) + "\\\n" + strings.Repeat("y", 2000) + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.text)
			if tc.wantErr != errors.Is(err, ErrLineTooLong) {
				t.Fatalf("Parse error = %v, want ErrLineTooLong: %v", err, tc.wantErr)
			}
			if !tc.wantErr && err != nil {
				t.Fatalf("Parse: %v", err)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []Option
	}{
		{
			name: "whitespace around name and value trimmed",
			text: "[Unit]\n  Description =  Hello World \t\n",
			want: []Option{{"Unit", "Description", "Hello World"}},
		},
		{
			name: "comments dropped",
			text: "# top\n[Unit]\n; semicolon\nA=1\n  # indented\nB=2 # not a comment\n",
			want: []Option{{"Unit", "A", "1"}, {"Unit", "B", "2 # not a comment"}},
		},
		{
			name: "continuation keeps backslash and newline",
			text: "[Service]\nExecStart=/bin/sh -c \\\n  'echo hi'\nUser=nobody\n",
			want: []Option{{"Service", "ExecStart", "/bin/sh -c \\\n  'echo hi'"}, {"Service", "User", "nobody"}},
		},
		{
			name: "continuation ended by blank line keeps a newline",
			text: "[Service]\nExecStart=/bin/true \\\n\nUser=nobody\n",
			want: []Option{{"Service", "ExecStart", "/bin/true \\\n"}, {"Service", "User", "nobody"}},
		},
		{
			name: "continued comment swallows the next line",
			text: "[Unit]\n# comment \\\nA=hidden\nB=shown\n",
			want: []Option{{"Unit", "B", "shown"}},
		},
		{
			name: "equals in value",
			text: "[Service]\nEnvironment=A=1 B=2\n",
			want: []Option{{"Service", "Environment", "A=1 B=2"}},
		},
		{
			name: "empty value",
			text: "[Service]\nExecStart=\nExecStart=/bin/true\n",
			want: []Option{{"Service", "ExecStart", ""}, {"Service", "ExecStart", "/bin/true"}},
		},
		{
			name: "CRLF line endings",
			text: "[Unit]\r\nDescription=x\r\n",
			want: []Option{{"Unit", "Description", "x"}},
		},
		{
			name: "repeated sections keep file order",
			text: "[Unit]\nA=1\n[Service]\nB=2\n[Unit]\nC=3\n",
			want: []Option{{"Unit", "A", "1"}, {"Service", "B", "2"}, {"Unit", "C", "3"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.text)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !slices.Equal(f.Options, tc.want) {
				t.Fatalf("options = %q, want %q", f.Options, tc.want)
			}
			gs, err := goSystemdParse(t, tc.text)
			if err != nil {
				t.Fatalf("go-systemd: %v", err)
			}
			if !slices.Equal(gs, tc.want) {
				t.Fatalf("go-systemd options = %q, want %q", gs, tc.want)
			}
		})
	}
}

func TestSerializeCanonical(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // written by hand
	}{
		{
			name: "single section round trips byte for byte",
			text: "[Service]\nExecStart=/bin/true\n",
			want: "[Service]\nExecStart=/bin/true\n",
		},
		{
			name: "comments and whitespace dropped",
			text: "# header\n\n[Unit]\nDescription = Hello World  \n; c\n\n\n[Service]\n\tExecStart=/bin/true\n",
			want: "[Unit]\nDescription=Hello World\n\n[Service]\nExecStart=/bin/true\n",
		},
		{
			name: "trailing newline added",
			text: "[Service]\nExecStart=/bin/true",
			want: "[Service]\nExecStart=/bin/true\n",
		},
		{
			name: "continuation lines become one option",
			text: "[Service]\nExecStart=/bin/sh -c \\\n    'echo hi'   \n",
			want: "[Service]\nExecStart=/bin/sh -c \\\n    'echo hi'\n",
		},
		{
			name: "sections grouped in first-seen order",
			text: "[Unit]\nA=1\n[Service]\nB=2\n[Unit]\nC=3\n[Install]\nD=4\n[Service]\nE=5\n",
			want: "[Unit]\nA=1\nC=3\n\n[Service]\nB=2\nE=5\n\n[Install]\nD=4\n",
		},
		{
			name: "sections without options vanish",
			text: "[Unit]\n[Service]\nA=b\n[Install]\n",
			want: "[Service]\nA=b\n",
		},
		{
			name: "CRLF normalized",
			text: "[Unit]\r\nDescription=x\r\n\r\n[Service]\r\nExecStart=/bin/true\r\n",
			want: "[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.text)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := f.Serialize()
			if got != tc.want {
				t.Fatalf("Serialize = %q, want %q", got, tc.want)
			}
			if gs := goSystemdSerialize(t, f.Options); got != gs {
				t.Fatalf("Serialize = %q, go-systemd writes %q", got, gs)
			}
			if h, want := f.Hash(), Hash(sha1.Sum([]byte(tc.want))); h != want {
				t.Fatalf("Hash = %s, want %s", h, want)
			}
			again, err := Parse(got)
			if err != nil {
				t.Fatalf("Parse(Serialize): %v", err)
			}
			if !slices.Equal(again.Options, grouped(f.Options)) {
				t.Fatalf("Parse(Serialize) = %q, want %q", again.Options, grouped(f.Options))
			}
			if again.Serialize() != got {
				t.Fatalf("Serialize is not stable: %q then %q", got, again.Serialize())
			}
		})
	}
}

func TestSerializeEmptyFile(t *testing.T) {
	var f File
	if got := f.Serialize(); got != "" {
		t.Fatalf("Serialize of no options = %q, want empty", got)
	}
	if got, want := goSystemdSerialize(t, nil), ""; got != want {
		t.Fatalf("go-systemd serialize of no options = %q, want %q", got, want)
	}
}

func TestHash(t *testing.T) {
	a := "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/true\n"
	tests := []struct {
		name  string
		text  string
		same  bool // same hash as a
		sha1a bool
	}{
		{name: "canonical text", text: a, same: true},
		{name: "comments and spacing do not count", text: "#c\n[Unit]\n Description = Hello\n[Service]\nExecStart = /bin/true\n", same: true},
		{name: "grouping does not count", text: "[Unit]\n[Service]\nExecStart=/bin/true\n[Unit]\nDescription=Hello\n", same: false},
		{name: "value change counts", text: "[Unit]\nDescription=Hello!\n\n[Service]\nExecStart=/bin/true\n", same: false},
		{name: "option order counts", text: "[Service]\nExecStart=/bin/true\n\n[Unit]\nDescription=Hello\n", same: false},
	}
	want := Hash(sha1.Sum([]byte(a)))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.text)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			h := f.Hash()
			if (h == want) != tc.same {
				t.Fatalf("Hash = %s, canonical hash %s, want same: %v", h, want, tc.same)
			}
			if h != HashOf(f.Serialize()) {
				t.Fatalf("Hash = %s, HashOf(Serialize) = %s", h, HashOf(f.Serialize()))
			}
			if len(h.String()) != 40 || h.Short() != h.String()[:7] {
				t.Fatalf("hash forms %q / %q", h.String(), h.Short())
			}
		})
	}
}

func TestTestdataMatchesGoSystemd(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.service"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no testdata unit files")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(string(b))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			gs, err := goSystemdParse(t, string(b))
			if err != nil {
				t.Fatalf("go-systemd: %v", err)
			}
			if !slices.Equal(f.Options, gs) {
				t.Fatalf("options = %q, go-systemd %q", f.Options, gs)
			}
			if s := f.Serialize(); s != goSystemdSerialize(t, f.Options) {
				t.Fatalf("Serialize differs from go-systemd: %q", s)
			}
		})
	}
}

func TestFromOptions(t *testing.T) {
	tests := []struct {
		name     string
		opts     []Option
		sentinel error
		contains string
	}{
		{name: "plain", opts: []Option{{"Unit", "Description", "x"}, {"Service", "ExecStart", "/bin/true"}}},
		{name: "interleaved sections", opts: []Option{{"Unit", "A", "1"}, {"Service", "B", "2"}, {"Unit", "C", "3"}}},
		{name: "continued value", opts: []Option{{"Service", "ExecStart", "/bin/sh -c \\\n  true"}}},
		{name: "empty value", opts: []Option{{"Service", "ExecStart", ""}}},
		{name: "no options", opts: nil, sentinel: ErrEmpty},
		{name: "line too long", opts: []Option{{"Unit", "Description", strings.Repeat("x", maxLine)}}, sentinel: ErrLineTooLong},
		{name: "equals in name", opts: []Option{{"Unit", "A=B", "1"}}, contains: "does not survive serialization"},
		{name: "newline in name", opts: []Option{{"Unit", "A\nB", "1"}}, contains: "do not serialize to a valid unit file"},
		{name: "leading space in value", opts: []Option{{"Unit", "A", " 1"}}, contains: "does not survive serialization"},
		{name: "bare newline in value", opts: []Option{{"Unit", "A", "1\n2=3"}}, contains: "survive serialization"},
		{name: "backslash at end of value", opts: []Option{{"Unit", "A", `x\`}, {"Unit", "B", "y"}}, contains: "survive serialization"},
		{name: "bracket in section", opts: []Option{{"Un]it", "A", "1"}}, contains: "do not serialize to a valid unit file"},
		{name: "comment-like name", opts: []Option{{"Unit", "#A", "1"}, {"Unit", "B", "2"}}, contains: "survive serialization"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := FromOptions(tc.opts)
			wantErr := tc.sentinel != nil || tc.contains != ""
			if !wantErr {
				if err != nil {
					t.Fatalf("FromOptions: %v", err)
				}
				if !slices.Equal(f.Options, tc.opts) {
					t.Fatalf("options = %q, want %q", f.Options, tc.opts)
				}
				tc.opts[0].Value = "changed"
				if f.Options[0].Value == "changed" {
					t.Fatal("FromOptions did not copy its input")
				}
				return
			}
			if err == nil {
				t.Fatalf("FromOptions(%q) succeeded, want an error", tc.opts)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Fatalf("error = %q, want %q", err, tc.sentinel)
			}
			if tc.contains != "" && !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error = %q, want it to contain %q", err, tc.contains)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	tests := []struct {
		name        string
		text        string
		description string
		install     bool
		execStart   []string
	}{
		{
			name:        "full unit",
			text:        "[Unit]\nDescription=First\nDescription=Second\n[Service]\nExecStart=\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
			description: "First",
			install:     true,
			execStart:   []string{"", "/bin/true"},
		},
		{
			name: "description outside [Unit] does not count",
			text: "[Service]\nDescription=nope\nExecStart=/bin/true\n",
			// no description, no install
			execStart: []string{"/bin/true"},
		},
		{
			name:      "empty [Install] section is no install",
			text:      "[Service]\nExecStart=/bin/true\n[Install]\n",
			execStart: []string{"/bin/true"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.text)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := f.Description(); got != tc.description {
				t.Errorf("Description = %q, want %q", got, tc.description)
			}
			if got := f.HasInstall(); got != tc.install {
				t.Errorf("HasInstall = %v, want %v", got, tc.install)
			}
			if got := f.Values("Service", "ExecStart"); !slices.Equal(got, tc.execStart) {
				t.Errorf("Values = %q, want %q", got, tc.execStart)
			}
			if got := f.Values("Nope", "ExecStart"); got != nil {
				t.Errorf("Values of a missing section = %q, want nil", got)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	text, err := os.ReadFile(filepath.Join("testdata", "apache@.service"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ours", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Parse(string(text)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-systemd", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := gsunit.DeserializeOptions(strings.NewReader(string(text))); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestSerializeManySections checks the grouping used beyond fewSections
// sections against go-systemd, with sections interleaved.
func TestSerializeManySections(t *testing.T) {
	var opts []Option
	for i := range 300 {
		opts = append(opts, Option{Section: "S" + strconv.Itoa(i%37), Name: "N" + strconv.Itoa(i), Value: strconv.Itoa(i)})
	}
	f, err := FromOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Serialize(), goSystemdSerialize(t, opts); got != want {
		t.Fatalf("Serialize differs from go-systemd:\n%s\n---\n%s", got, want)
	}
	if got := serializedSize(opts); got != len(f.Serialize()) {
		t.Fatalf("serializedSize = %d, want %d", got, len(f.Serialize()))
	}
	again, err := Parse(f.Serialize())
	if err != nil || !slices.Equal(again.Options, grouped(opts)) {
		t.Fatalf("Parse(Serialize) = %v, %v", again, err)
	}
}
