package unit

import (
	"errors"
	"fmt"
	"iter"
	"path"
	"slices"
	"strings"
)

// fleetSection is the unit file section holding scheduling requirements.
const fleetSection = "X-Fleet"

// reqKey is an [X-Fleet] option name, current or deprecated.
type reqKey int

const (
	keyUnknown reqKey = iota
	keyMachineID
	keyXConditionMachineID
	keyXConditionMachineBootID
	keyMachineOf
	keyXConditionMachineOf
	keyMachineMetadata
	keyXConditionMachineMetadata
	keyConflicts
	keyXConflicts
	keyGlobal
	keyReplaces
)

func parseReqKey(name string) reqKey {
	switch name {
	case "MachineID":
		return keyMachineID
	case "X-ConditionMachineID":
		return keyXConditionMachineID
	case "X-ConditionMachineBootID":
		return keyXConditionMachineBootID
	case "MachineOf":
		return keyMachineOf
	case "X-ConditionMachineOf":
		return keyXConditionMachineOf
	case "MachineMetadata":
		return keyMachineMetadata
	case "X-ConditionMachineMetadata":
		return keyXConditionMachineMetadata
	case "Conflicts":
		return keyConflicts
	case "X-Conflicts":
		return keyXConflicts
	case "Global":
		return keyGlobal
	case "Replaces":
		return keyReplaces
	}
	return keyUnknown
}

// String is the option name as written in a unit file.
func (k reqKey) String() string {
	switch k {
	case keyMachineID:
		return "MachineID"
	case keyXConditionMachineID:
		return "X-ConditionMachineID"
	case keyXConditionMachineBootID:
		return "X-ConditionMachineBootID"
	case keyMachineOf:
		return "MachineOf"
	case keyXConditionMachineOf:
		return "X-ConditionMachineOf"
	case keyMachineMetadata:
		return "MachineMetadata"
	case keyXConditionMachineMetadata:
		return "X-ConditionMachineMetadata"
	case keyConflicts:
		return "Conflicts"
	case keyXConflicts:
		return "X-Conflicts"
	case keyGlobal:
		return "Global"
	case keyReplaces:
		return "Replaces"
	}
	return "unknown"
}

// machineIDRank orders the MachineID aliases: a lower rank wins whatever
// the file order.
func (k reqKey) machineIDRank() int {
	switch k {
	case keyMachineID:
		return 1
	case keyXConditionMachineID:
		return 2
	case keyXConditionMachineBootID:
		return 3
	}
	return 0
}

// Requirements are the scheduling constraints of one unit, read from its
// [X-Fleet] section.
type Requirements struct {
	// MachineID is the machine the unit must run on: the first value of
	// MachineID, else of X-ConditionMachineID, else of
	// X-ConditionMachineBootID. "" means any machine.
	MachineID string
	// MachineOf lists units that must run on the same machine (MachineOf
	// and X-ConditionMachineOf; fleet's messages call them peers).
	MachineOf []string
	// Metadata maps a machine metadata key to the values any one of which
	// the machine must have (MachineMetadata and
	// X-ConditionMachineMetadata, key=value split on the first '=').
	// Every key must match. Malformed entries are left out here and
	// reported by File.Validate.
	Metadata map[string][]string
	// Conflicts lists path.Match globs of units that must not share a
	// machine with this one (Conflicts and X-Conflicts, split on
	// whitespace).
	Conflicts []string
	// Global means the unit runs on every machine that matches it.
	Global bool
	// Replaces lists path.Match globs of units this one evicts from its
	// machine (not split on whitespace).
	Replaces []string
}

// reqValues yields the values of one [X-Fleet] option: a value that
// starts and ends with '"' holds several values separated by spaces
// outside quotes, with the quotes removed. Unlike fleet, empty values
// produced by repeated spaces are dropped.
func reqValues(v string) iter.Seq[string] {
	return func(yield func(string) bool) {
		if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			yield(v)
			return
		}
		var b strings.Builder
		quoted := false
		for i := 0; i < len(v); i++ {
			switch c := v[i]; {
			case c == '"':
				quoted = !quoted
			case c == ' ' && !quoted:
				if b.Len() > 0 && !yield(b.String()) {
					return
				}
				b.Reset()
			default:
				b.WriteByte(c)
			}
		}
		if b.Len() > 0 {
			yield(b.String())
		}
	}
}

// truthy is fleet's set of true values for Global.
func truthy(v string) bool {
	switch strings.ToLower(v) {
	case "true", "yes", "1", "on", "t":
		return true
	}
	return false
}

// reqScan is the result of reading the [X-Fleet] section: the
// requirements plus what Validate and Warnings need beyond them.
type reqScan struct {
	Requirements
	machineIDSet bool     // a MachineID alias had a value, even ""
	badMetadata  []string // metadata values that are not key=value
}

// scanRequirements reads [X-Fleet]. unitName, if not empty, supplies the
// %n %N %p %i specifiers.
func (f *File) scanRequirements(unitName string) reqScan {
	var s reqScan
	var name Name
	if unitName != "" {
		name = ParseName(unitName)
	}
	bestRank := 0
	for _, o := range f.Options {
		if o.Section != fleetSection {
			continue
		}
		key := parseReqKey(o.Name)
		if key == keyUnknown {
			continue
		}
		for v := range reqValues(o.Value) {
			if unitName != "" {
				v = name.expand(v)
			}
			s.add(key, v, &bestRank)
		}
	}
	return s
}

// add records one value of an [X-Fleet] option.
func (s *reqScan) add(key reqKey, v string, bestRank *int) {
	switch key {
	case keyMachineID, keyXConditionMachineID, keyXConditionMachineBootID:
		if r := key.machineIDRank(); *bestRank == 0 || r < *bestRank {
			*bestRank = r
			s.MachineID = v
			s.machineIDSet = true
		}
	case keyMachineOf, keyXConditionMachineOf:
		s.MachineOf = append(s.MachineOf, v)
	case keyMachineMetadata, keyXConditionMachineMetadata:
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" || val == "" {
			s.badMetadata = append(s.badMetadata, v)
			return
		}
		if s.Metadata == nil {
			s.Metadata = make(map[string][]string)
		}
		if !slices.Contains(s.Metadata[k], val) {
			s.Metadata[k] = append(s.Metadata[k], val)
		}
	case keyConflicts, keyXConflicts:
		for g := range strings.FieldsSeq(v) {
			s.Conflicts = append(s.Conflicts, g)
		}
	case keyGlobal:
		s.Global = truthy(v)
	case keyReplaces:
		s.Replaces = append(s.Replaces, v)
	}
}

// Requirements reads the [X-Fleet] section. Repeated options accumulate;
// quoted multi-values are split (see package doc). If unitName is not
// empty, %n %N %p and %i in every value are replaced by the parts of that
// name (see Name); with "" no substitution happens, as when validating
// contents that have no name yet.
func (f *File) Requirements(unitName string) Requirements {
	return f.scanRequirements(unitName).Requirements
}

// IsGlobal reports whether the unit is global (Global, last value wins).
func (f *File) IsGlobal() bool {
	global := false
	for _, o := range f.Options {
		if o.Section == fleetSection && o.Name == "Global" {
			for v := range reqValues(o.Value) {
				global = truthy(v)
			}
		}
	}
	return global
}

// Warnings lists problems that do not make the unit invalid: one
// `unrecognized requirement in [X-Fleet] section: "K"` per unknown option
// name, in file order.
func (f *File) Warnings() []string {
	var seen []string
	var warnings []string
	for _, o := range f.Options {
		if o.Section != fleetSection || parseReqKey(o.Name) != keyUnknown || slices.Contains(seen, o.Name) {
			continue
		}
		seen = append(seen, o.Name)
		warnings = append(warnings, fmt.Sprintf("unrecognized requirement in [X-Fleet] section: %q", o.Name))
	}
	return warnings
}

// Validate is the check of unit contents that the API applies before it
// stores a unit and fleetctl applies before it sends one (with
// ValidateName for the name). In order, it refuses:
//
//   - contents over MaxContentBytes (the error wraps ErrTooLarge), options
//     or sections without a name, text that is not UTF-8, and control
//     characters other than tab (and a continuation's newline) in values,
//     names and sections: systemd must read every line as we do;
//   - [X-Fleet] values with an unterminated quote, and Global values that
//     are no boolean;
//   - requirement combinations that can never be scheduled, with fleet's
//     messages and in fleet's order;
//   - values fleet ignored silently: a MachineMetadata entry that is not
//     key=value, and Conflicts or Replaces globs path.Match cannot parse;
//   - [Install] WantedBy, RequiredBy, UpheldBy, Alias and Also values that
//     are not unit names.
//
// Unknown options and sections stay allowed, as in fleet. Specifiers are
// not substituted. Every error names the option it is about.
func (f *File) Validate() error {
	if err := checkContents(f); err != nil {
		return err
	}
	if err := checkFleetSyntax(f); err != nil {
		return err
	}
	if err := f.validateRequirements(); err != nil {
		return err
	}
	return checkInstall(f)
}

// validateRequirements applies fleet's requirement checks, then ours.
func (f *File) validateRequirements() error {
	s := f.scanRequirements("")
	for _, peer := range s.MachineOf {
		for _, c := range s.Conflicts {
			if ok, _ := path.Match(c, peer); ok {
				return fmt.Errorf("unresolvable requirements: peer %q matches conflict %q", peer, c)
			}
		}
		for _, r := range s.Replaces {
			if ok, _ := path.Match(r, peer); ok {
				return fmt.Errorf("unresolvable requirements: peer %q matches replace %q", peer, r)
			}
		}
	}
	hasTarget := s.machineIDSet
	hasPeers := len(s.MachineOf) > 0
	hasConflicts := len(s.Conflicts) > 0
	hasReplaces := len(s.Replaces) > 0
	switch {
	case hasTarget && hasPeers:
		return errors.New("MachineID cannot be used with Peers")
	case hasTarget && hasConflicts:
		return errors.New("MachineID cannot be used with Conflicts")
	case hasTarget && s.Global:
		return errors.New("MachineID cannot be used with Global")
	case hasTarget && hasReplaces:
		return errors.New("MachineID cannot be used with Replaces")
	case s.Global && hasPeers:
		return errors.New("Global cannot be used with Peers")
	case s.Global && hasReplaces:
		return errors.New("Global cannot be used with Replaces")
	case hasConflicts && hasReplaces:
		return errors.New("Conflicts cannot be used with Replaces")
	}
	if hasTarget && s.MachineID == "" {
		return errors.New("MachineID cannot be empty")
	}
	if len(s.badMetadata) > 0 {
		return fmt.Errorf("invalid MachineMetadata value %q: want key=value", s.badMetadata[0])
	}
	if err := checkGlobs("Conflicts", s.Conflicts); err != nil {
		return err
	}
	return checkGlobs("Replaces", s.Replaces)
}

// checkGlobs reports the first pattern path.Match rejects.
func checkGlobs(option string, globs []string) error {
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("invalid %s pattern %q: %w", option, g, err)
		}
	}
	return nil
}

// matchAny reports whether any glob matches name. Malformed globs never
// match.
func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// MatchesMetadata reports whether a machine with metadata md satisfies
// r.Metadata: for every key the machine has one of the listed values. A
// machine lacking a key does not match.
func (r Requirements) MatchesMetadata(md map[string]string) bool {
	for k, want := range r.Metadata {
		v, ok := md[k]
		if !ok || !slices.Contains(want, v) {
			return false
		}
	}
	return true
}

// ConflictsWith reports whether units a and b may not share a machine:
// a Conflicts glob of either matches the other's name.
func ConflictsWith(aName string, a Requirements, bName string, b Requirements) bool {
	return matchAny(a.Conflicts, bName) || matchAny(b.Conflicts, aName)
}

// ReplacesUnit reports whether a Replaces glob matches name.
func (r Requirements) ReplacesUnit(name string) bool { return matchAny(r.Replaces, name) }

// MatchMachineID reports whether machineID satisfies a MachineID
// requirement want: want equals the full ID or its 8-character short form
// (ShortID). An empty want matches nothing; check for it first.
func MatchMachineID(want, machineID string) bool {
	if want == "" {
		return false
	}
	return want == machineID || want == ShortID(machineID)
}
