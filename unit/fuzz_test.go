package unit

import (
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzParse checks Parse against go-systemd's deserializer and checks that
// whatever Parse accepts survives serialization.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/true\n",
		"garbage\n[Unit]\nA=1\n[Service]\nB=2\n[Unit]\nC=3\n",
		"[Service]\nExecStart=/bin/sh -c \\\n  'echo hi'\n",
		"[Service]\nExecStart=/bin/true \\\n\nUser=x\n",
		"[Unit]\r\nA=b\r\n",
		"# c \\\n[Unit]\nA=1\n",
		"[Un\nit]\nA=1\n",
		"[X-Fleet]\nMachineMetadata=\"a=b\" \"c=d\"\n",
		"[Unit]\n\xff=1\n",
		"[Unit]\n\u00a0A\u2028=\u0085b\u0085\n",
		"[Unit]\nA",
		"[Unit] x\nA=1\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		opts, _, err := lexOptions(text)
		if checkLineLength(text) == nil {
			gs, gsErr := goSystemdParse(t, text)
			if (err == nil) != (gsErr == nil) {
				t.Fatalf("lex error %v, go-systemd error %v", err, gsErr)
			}
			if err == nil && !slices.Equal(opts, gs) {
				t.Fatalf("lex = %q, go-systemd = %q", opts, gs)
			}
		}

		file, err := Parse(text)
		if err != nil {
			return
		}
		if len(file.Options) == 0 {
			t.Fatal("Parse succeeded with no options")
		}
		canon := file.Serialize()
		if gs := goSystemdSerialize(t, file.Options); canon != gs {
			t.Fatalf("Serialize = %q, go-systemd = %q", canon, gs)
		}
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(Serialize) of %q: %v", canon, err)
		}
		if want := grouped(file.Options); !slices.Equal(again.Options, want) {
			t.Fatalf("Parse(Serialize) = %q, want %q", again.Options, want)
		}
		if again.Serialize() != canon {
			t.Fatalf("canonical form not stable: %q then %q", canon, again.Serialize())
		}
		if again.Hash() != file.Hash() {
			t.Fatal("hash changed across a round trip")
		}
		if _, err := FromOptions(file.Options); err != nil && len(canon) <= MaxContentBytes {
			t.Fatalf("FromOptions of parsed options: %v", err)
		}
	})
}

// FuzzValidateName checks that names ValidateName accepts are stable under
// MangleName and split consistently by ParseName.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{
		"hello.service", "foo@.service", "foo@bar.timer", "foo@bar.mount", "@foo.service",
		"a.b@c@d.target", "hello", "hello.", "héllo.service", `a\b.socket`, "..service", "",
		".service", "x.snapshot", "x.busname", "x.scope", "-.mount", "-.slice", strings.Repeat("a", 233) + ".service",
		strings.Repeat("a", 234) + ".service",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n := ParseName(name)
		if n.IsTemplate() && n.IsInstance() {
			t.Fatalf("%q is both template and instance", name)
		}
		if err := ValidateName(name); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if got := MangleName(name); got != name {
			t.Fatalf("MangleName(%q) = %q for a valid name", name, got)
		}
		if n.Full != name || !isFleetType(n.Type) || unloadableType(n.Type) != "" || n.Stem()+"."+n.Type != name {
			t.Fatalf("ParseName(%q) = %+v", name, n)
		}
		if len(name) > maxNameLen || strings.HasPrefix(name, ".") || slices.Contains(reservedNames, name) {
			t.Fatalf("ValidateName accepted %q, which systemd or the agent cannot handle", name)
		}
		if err := systemdNameError(name); err != nil {
			t.Fatalf("ValidateName accepted %q, which systemd refuses: %v", name, err)
		}
		if strings.HasPrefix(n.Prefix, "@") || (n.IsTemplate() || n.IsInstance()) && n.Prefix == "" {
			t.Fatalf("ParseName(%q) prefix %q", name, n.Prefix)
		}
		if n.IsInstance() {
			tmpl := n.Template()
			if err := ValidateName(tmpl); err != nil {
				t.Fatalf("template %q of valid instance %q: %v", tmpl, name, err)
			}
			if tn := ParseName(tmpl); !tn.IsTemplate() || tn.Prefix != n.Prefix || tn.Type != n.Type {
				t.Fatalf("template %q of %q parses as %+v", tmpl, name, tn)
			}
		} else if n.Template() != "" {
			t.Fatalf("Template() of non-instance %q = %q", name, n.Template())
		}
	})
}

// FuzzRequirements checks [X-Fleet] parsing invariants.
func FuzzRequirements(f *testing.F) {
	for _, s := range [][2]string{
		{"MachineID=abc\n", ""},
		{"MachineOf=%p-sidekick@%i.service\nConflicts=%p@*.service\n", "web@1.service"},
		{`MachineMetadata="region=us-east" "disk=ssd" "x=a=b"` + "\n", ""},
		{"X-ConditionMachineBootID=b\nX-ConditionMachineID=a\n", "x.service"},
		{"Global=yes\nGlobal=off\nGlobal=T\n", ""},
		{"Replaces=a b\nX-Conflicts=c  d\n", "%n%N%p%i.service"},
		{"MachineOf=a.service\nConflicts=a*\n", ""},
		{"Conflicts=[\n", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, body, unitName string) {
		file, err := Parse("[X-Fleet]\n" + body)
		if err != nil {
			return
		}
		plain := file.Requirements("")
		named := file.Requirements(unitName)
		if plain.Global != file.IsGlobal() {
			t.Fatalf("Requirements.Global %v, IsGlobal %v", plain.Global, file.IsGlobal())
		}
		if !strings.Contains(body, "%") && !reflect.DeepEqual(plain, named) {
			t.Fatalf("name changed requirements without specifiers: %+v vs %+v", plain, named)
		}
		for _, r := range []Requirements{plain, named} {
			for k, vals := range r.Metadata {
				if k == "" || len(vals) == 0 || slices.Contains(vals, "") {
					t.Fatalf("malformed metadata %q=%q", k, vals)
				}
				md := map[string]string{}
				for k2, v2 := range r.Metadata {
					md[k2] = v2[len(v2)-1]
				}
				if !r.MatchesMetadata(md) {
					t.Fatalf("metadata %v does not match %v", md, r.Metadata)
				}
				delete(md, k)
				if r.MatchesMetadata(md) {
					t.Fatalf("metadata %v without %q matches %v", md, k, r.Metadata)
				}
			}
			for _, c := range r.Conflicts {
				if c == "" || strings.ContainsAny(c, " \t\n") {
					t.Fatalf("conflict glob %q not split on whitespace", c)
				}
				if strings.ContainsAny(c, `*?[\`) {
					continue
				}
				// A literal glob names exactly one unit, in both directions.
				if !ConflictsWith("self", r, c, Requirements{}) || !ConflictsWith(c, Requirements{}, "self", r) {
					t.Fatalf("literal conflict %q does not conflict", c)
				}
			}
			for _, g := range r.Replaces {
				if !strings.ContainsAny(g, `*?[\`) && !r.ReplacesUnit(g) {
					t.Fatalf("literal Replaces %q does not replace it", g)
				}
			}
		}
		if err := file.Validate(); err == nil {
			for _, p := range plain.MachineOf {
				for _, g := range append(slices.Clone(plain.Conflicts), plain.Replaces...) {
					if ok, _ := path.Match(g, p); ok {
						t.Fatalf("Validate accepted peer %q matching %q", p, g)
					}
				}
			}
			for _, g := range append(slices.Clone(plain.Conflicts), plain.Replaces...) {
				if _, err := path.Match(g, ""); err != nil {
					t.Fatalf("Validate accepted bad glob %q", g)
				}
			}
			if plain.Global && (plain.MachineID != "" || len(plain.MachineOf) > 0 || len(plain.Replaces) > 0) {
				t.Fatalf("Validate accepted a global unit with placement constraints: %+v", plain)
			}
			if len(plain.Conflicts) > 0 && len(plain.Replaces) > 0 {
				t.Fatalf("Validate accepted Conflicts with Replaces: %+v", plain)
			}
		}
		for _, w := range file.Warnings() {
			if !strings.HasPrefix(w, "unrecognized requirement in [X-Fleet] section: ") {
				t.Fatalf("warning %q", w)
			}
		}
	})
}
