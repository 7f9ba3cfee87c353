package unit

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// ErrTooLarge is wrapped by the error File.Validate returns for contents
// larger than MaxContentBytes (test with errors.Is).
var ErrTooLarge = fmt.Errorf("unit contents exceed the limit of %d bytes (%d KiB)", MaxContentBytes, MaxContentBytes>>10)

// checkContents refuses contents the cluster must not store: more than
// MaxContentBytes in canonical form, an option or section without a name,
// text that is not UTF-8 (systemd skips such lines), and control
// characters. systemd ends a line at '\r' and '\0' as well as at '\n', so a
// value holding them would hide further options from everything but
// systemd; only tab, and the newline after a continuation backslash, may
// appear in a value.
func checkContents(f *File) error {
	if n := len(f.Serialize()); n > MaxContentBytes {
		return fmt.Errorf("unit contents are %d bytes: %w", n, ErrTooLarge)
	}
	for _, o := range f.Options {
		if err := checkOption(o); err != nil {
			return err
		}
	}
	return nil
}

func checkOption(o Option) error {
	switch {
	case o.Section == "":
		return fmt.Errorf("option %q is in a section without a name", o.Name)
	case !utf8.ValidString(o.Section):
		return fmt.Errorf("section name %q is not valid UTF-8", o.Section)
	case o.Name == "":
		return fmt.Errorf("option without a name in [%s] (value %q)", o.Section, o.Value)
	case !utf8.ValidString(o.Name):
		return fmt.Errorf("option name %q in [%s] is not valid UTF-8", o.Name, o.Section)
	case !utf8.ValidString(o.Value):
		return fmt.Errorf("value of %s in [%s] is not valid UTF-8", o.Name, o.Section)
	}
	if c, ok := controlChar(o.Section, false); ok {
		return fmt.Errorf("section name %q holds the control character %q", o.Section, c)
	}
	if c, ok := controlChar(o.Name, false); ok {
		return fmt.Errorf("option name %q in [%s] holds the control character %q", o.Name, o.Section, c)
	}
	if c, ok := controlChar(o.Value, true); ok {
		return fmt.Errorf("value of %s in [%s] holds the control character %q, which systemd would not read as part of the value",
			o.Name, o.Section, c)
	}
	return nil
}

// controlChar finds the first C0 control character in s other than tab
// and, when value is set, other than a newline right after a backslash (a
// continuation line).
func controlChar(s string, value bool) (rune, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 || c == '\t' {
			continue
		}
		if value && c == '\n' && i > 0 && s[i-1] == '\\' {
			continue
		}
		return rune(c), true
	}
	return 0, false
}

// checkFleetSyntax refuses [X-Fleet] values fleet read in a way nobody
// meant: a quoted multi-value whose quotes do not close, and a Global
// value that is no boolean (fleet took anything but its true values as
// false).
func checkFleetSyntax(f *File) error {
	for _, o := range f.Options {
		if o.Section != fleetSection {
			continue
		}
		key := parseReqKey(o.Name)
		if key == keyUnknown {
			continue
		}
		if strings.HasPrefix(o.Value, `"`) &&
			(len(o.Value) < 2 || !strings.HasSuffix(o.Value, `"`) || strings.Count(o.Value, `"`)%2 != 0) {
			return fmt.Errorf("value of %s in [X-Fleet] has an unterminated quote: %q", o.Name, o.Value)
		}
		if key != keyGlobal {
			continue
		}
		for v := range reqValues(o.Value) {
			if !truthy(v) && !falsy(v) {
				return fmt.Errorf("invalid Global value %q: want true or false (yes/no, 1/0, on/off, t/f)", v)
			}
		}
	}
	return nil
}

// falsy is the set of false values for Global; empty resets it to false.
func falsy(v string) bool {
	switch strings.ToLower(v) {
	case "", "false", "no", "0", "off", "f":
		return true
	}
	return false
}

// installNameOptions are the [Install] options whose values are unit
// names, separated by whitespace; the agent hands them to systemd when it
// enables the unit.
var installNameOptions = []string{"WantedBy", "RequiredBy", "UpheldBy", "Alias", "Also"}

// checkInstall refuses [Install] values that are not unit names systemd
// would accept (such as "../.."): systemd would refuse to enable the unit
// on whatever machine it is placed. Specifiers (%i, %n, ...) count as name
// characters; the names are checked as systemd checks them, not with the
// cluster's own stricter rules for the names of its units.
func checkInstall(f *File) error {
	for _, o := range f.Options {
		if o.Section != "Install" || !slices.Contains(installNameOptions, o.Name) {
			continue
		}
		for word := range strings.FieldsSeq(o.Value) {
			if err := systemdNameError(withoutSpecifiers(word)); err != nil {
				return fmt.Errorf("invalid %s value %q in [Install]: %w", o.Name, word, err)
			}
		}
	}
	return nil
}

// withoutSpecifiers replaces every specifier "%x" by "x", a name
// character, and "%%" by the '%' it stands for, so that a name holding
// specifiers can be checked for the rest.
func withoutSpecifiers(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+1 < len(s) {
			if s[i+1] == '%' {
				b.WriteByte('%')
			} else {
				b.WriteByte('x')
			}
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// systemdNameError checks name as systemd 252 checks a unit name: at most
// 255 bytes, a stem of ASCII letters, digits and :-_.\@ not starting with
// '@' and not empty, and the suffix of a type systemd has.
func systemdNameError(name string) error {
	dot := strings.LastIndexByte(name, '.')
	switch {
	case name == "":
		return errors.New("empty unit name")
	case len(name) > fileNameMax:
		return fmt.Errorf("unit name exceeds %d bytes", fileNameMax)
	case dot <= 0:
		return errors.New(`not a unit name: want "name.type"`)
	}
	if t := name[dot+1:]; !isFleetType(t) || t == "snapshot" || t == "busname" {
		return fmt.Errorf("invalid unit type: %q", t)
	}
	for _, r := range name[:dot] {
		if !isNameChar(r) {
			return fmt.Errorf("invalid character %q in unit name", r)
		}
	}
	if name[0] == '@' {
		return errors.New(`unit name cannot start in "@"`)
	}
	return nil
}
