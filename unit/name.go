package unit

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// Name length. systemd takes names of up to 255 bytes, but the agent
// writes a unit file through a temporary sibling named
// "." + name + ".tmp" + up to 10 random digits (systemd.WriteUnitFile,
// os.CreateTemp), and that name must fit the 255 bytes a file name may
// have. So a name may have 255 - 15 = 240 bytes.
const (
	fileNameMax   = 255                    // NAME_MAX of Linux file systems
	tempAffix     = len(".") + len(".tmp") // around the name in the agent's temporary file
	tempRandomMax = len("4294967295")      // os.CreateTemp's random part: a uint32 in decimal
	maxNameLen    = fileNameMax - tempAffix - tempRandomMax
)

// isFleetType reports whether t is a unit type fleet knew. MangleName keeps
// these suffixes, so that a name of a type systemd no longer has is refused
// by name rather than turned into "x.snapshot.service".
func isFleetType(t string) bool {
	switch t {
	case "automount", "busname", "device", "mount", "path", "scope", "service",
		"slice", "snapshot", "socket", "swap", "target", "timer":
		return true
	}
	return false
}

// unloadableType says why systemd 252 and later cannot run a unit of
// type t from a unit file, or "" if it can.
func unloadableType(t string) string {
	switch t {
	case "snapshot":
		return "systemd removed snapshot units in version 228"
	case "busname":
		return "systemd removed busname units in version 230"
	case "scope":
		return "systemd creates scope units only through its API, never from a unit file"
	}
	return ""
}

// reservedNames are units systemd itself holds for the whole life of the
// manager, the root mount and the root slice: a unit file of that name
// would shadow them, and stopping it would take the machine down.
var reservedNames = []string{"-.mount", "-.slice"}

// isTemplateType reports whether units of type t may be templates or
// instances.
func isTemplateType(t string) bool {
	switch t {
	case "path", "service", "socket", "target", "timer":
		return true
	}
	return false
}

// isNameChar reports whether r may appear before the type suffix of a unit
// name: ASCII letters and digits and :-_.\@.
func isNameChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune(`:-_.\@`, r)
}

// ValidateName checks a unit name with fleet's rules, in fleet's order and
// with fleet's error texts, then with the rules of systemd 252 and later
// and of the agent: at most 240 bytes (see maxNameLen), no type systemd
// cannot load from a unit file (snapshot, busname, scope), no leading '.'
// (systemd ignores hidden unit files), and none of the names systemd keeps
// for itself ("-.mount", "-.slice").
func ValidateName(name string) error {
	if len(name) == 0 {
		return errors.New("unit name cannot be empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("unit name exceeds maximum length (%d)", maxNameLen)
	}
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return errors.New(`unit name must contain "."`)
	}
	if dot == len(name)-1 {
		return errors.New(`unit name cannot end in "."`)
	}
	suffix := name[dot+1:]
	if !isFleetType(suffix) {
		return fmt.Errorf("invalid unit type: %q", suffix)
	}
	if strings.Contains(name, "@") && !isTemplateType(suffix) {
		return fmt.Errorf("invalid unit type for template: %q", suffix)
	}
	for _, r := range name[:dot] {
		if !isNameChar(r) {
			return fmt.Errorf("invalid character %q in unit name", r)
		}
	}
	if strings.HasPrefix(name, "@") {
		return errors.New(`unit name cannot start in "@"`)
	}
	if why := unloadableType(suffix); why != "" {
		return fmt.Errorf("unsupported unit type %q: %s", suffix, why)
	}
	if strings.HasPrefix(name, ".") {
		return errors.New(`unit name cannot start in ".": systemd ignores hidden unit files`)
	}
	if slices.Contains(reservedNames, name) {
		return fmt.Errorf("unit name %q is reserved: systemd manages that unit itself", name)
	}
	return nil
}

// MangleName turns a command-line argument into a unit name: the base
// name of the path, with ".service" appended unless it already ends in one
// of the unit types fleet knew (see isFleetType; ValidateName then refuses
// the ones systemd no longer loads). Unlike fleet, "foo.target" stays
// "foo.target". An empty argument stays empty.
func MangleName(arg string) string {
	if arg == "" {
		return ""
	}
	base := path.Base(arg)
	if dot := strings.LastIndexByte(base, '.'); dot >= 0 && isFleetType(base[dot+1:]) {
		return base
	}
	return base + ".service"
}

// Name is a unit name split into its parts. For "foo@bar.service": Prefix
// "foo", Instance "bar", Type "service". A name without '@' has its whole
// stem (the part before the last '.') as Prefix.
type Name struct {
	Full     string
	Prefix   string
	Instance string
	Type     string
}

// ParseName splits name. Everything after the first '@' and before the
// last '.' is the instance.
func ParseName(name string) Name {
	n := Name{Full: name}
	stem := n.Stem()
	if dot := strings.LastIndexByte(name, '.'); dot >= 0 {
		n.Type = name[dot+1:]
	}
	if at := strings.IndexByte(stem, '@'); at >= 0 {
		n.Prefix, n.Instance = stem[:at], stem[at+1:]
	} else {
		n.Prefix = stem
	}
	return n
}

// Stem is the name without its type suffix ("foo@bar" for
// "foo@bar.service"), what the %N specifier stands for.
func (n Name) Stem() string {
	if dot := strings.LastIndexByte(n.Full, '.'); dot >= 0 {
		return n.Full[:dot]
	}
	return n.Full
}

// templated reports whether the stem holds an '@'.
func (n Name) templated() bool { return strings.IndexByte(n.Stem(), '@') >= 0 }

// IsTemplate reports whether n is a template such as "foo@.service".
func (n Name) IsTemplate() bool { return n.templated() && n.Instance == "" }

// IsInstance reports whether n is an instance such as "foo@bar.service".
func (n Name) IsInstance() bool { return n.templated() && n.Instance != "" }

// Template returns the template an instance comes from ("foo@.service"
// for "foo@bar.service"), or "" if n is not an instance.
func (n Name) Template() string {
	if !n.IsInstance() {
		return ""
	}
	stem := n.Stem()
	return stem[:strings.IndexByte(stem, '@')+1] + n.Full[len(stem):]
}

// expand substitutes the specifiers %n (full name), %N (name without
// type), %p (prefix) and %i (instance) in s, in one pass: substituted text
// is not scanned again. Other '%' sequences are kept as written.
func (n Name) expand(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '%')
		if i < 0 || i == len(s)-1 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case 'n':
			b.WriteString(n.Full)
		case 'N':
			b.WriteString(n.Stem())
		case 'p':
			b.WriteString(n.Prefix)
		case 'i':
			b.WriteString(n.Instance)
		default:
			b.WriteByte('%')
			s = s[i+1:]
			continue
		}
		s = s[i+2:]
	}
}
