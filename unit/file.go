package unit

import (
	"fmt"
	"slices"
	"strings"
)

// Option is one Name=Value line of a unit file section.
type Option struct {
	Section string
	Name    string
	Value   string
}

// File is a parsed unit file: its options in file order.
type File struct {
	Options []Option
}

// Parse reads unit file text (see the package doc for the syntax). Errors:
// ErrEmpty for blank text, ErrNoOptions for text without any option
// (such as text without a section header), ErrLineTooLong, a
// syntax error, an option name that is not UTF-8 (go-systemd would
// replace its bytes, so the unit stored would not be the one written), or
// a value that would read back differently once serialized (a value
// ending in a backslash).
func Parse(text string) (*File, error) {
	if strings.TrimSpace(text) == "" {
		return nil, ErrEmpty
	}
	if err := checkLineLength(text); err != nil {
		return nil, err
	}
	opts, badName, err := lexOptions(text)
	if err != nil {
		return nil, fmt.Errorf("parse unit file: %w", err)
	}
	if badName != "" {
		return nil, fmt.Errorf("parse unit file: option name %s is not valid UTF-8", quoteClipped(strings.TrimSpace(badName)))
	}
	if len(opts) == 0 {
		return nil, ErrNoOptions
	}
	for _, o := range opts {
		if strings.HasSuffix(o.Value, `\`) {
			return nil, fmt.Errorf("parse unit file: value of %s in [%s] ends in a backslash", o.Name, o.Section)
		}
	}
	return &File{Options: opts}, nil
}

// FromOptions builds a File from options given one by one (as the HTTP
// API receives them). It refuses options whose canonical form would be
// larger than MaxContentBytes (ErrTooLarge), before anything else, and
// checks that the options survive serialization and parsing unchanged,
// so the canonical form, its hash and the file the agent writes all
// describe the same unit. The slice is copied.
func FromOptions(opts []Option) (*File, error) {
	if len(opts) == 0 {
		return nil, ErrEmpty
	}
	if n := serializedSize(opts); n > MaxContentBytes {
		return nil, fmt.Errorf("unit contents are %d bytes: %w", n, ErrTooLarge)
	}
	if err := checkRoundTrip(opts); err != nil {
		return nil, err
	}
	return &File{Options: append([]Option(nil), opts...)}, nil
}

// checkRoundTrip parses the canonical form of opts and compares the result
// with opts in canonical (grouped) order.
func checkRoundTrip(opts []Option) error {
	text := serialize(opts)
	if err := checkLineLength(text); err != nil {
		return err
	}
	got, _, err := lexOptions(text)
	if err != nil {
		return fmt.Errorf("options do not serialize to a valid unit file: %w", err)
	}
	want := grouped(opts)
	for i, o := range want {
		if i >= len(got) || got[i] != o {
			return fmt.Errorf("option %q in section %q does not survive serialization", o.Name, o.Section)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("options do not survive serialization: %d options read back from %d", len(got), len(want))
	}
	return nil
}

// fewSections is the number of sections up to which scanning the options
// once per section is cheaper than grouping them through a map. Beyond it
// the work stays linear, however many sections hostile input has.
const fewSections = 8

// sectionOrder lists the distinct sections of opts in first-seen order.
func sectionOrder(opts []Option) []string {
	var sections []string
	var seen map[string]bool
	for _, o := range opts {
		if seen != nil {
			if !seen[o.Section] {
				seen[o.Section] = true
				sections = append(sections, o.Section)
			}
			continue
		}
		if !slices.Contains(sections, o.Section) {
			sections = append(sections, o.Section)
			if len(sections) > fewSections {
				seen = make(map[string]bool, len(sections))
				for _, s := range sections {
					seen[s] = true
				}
			}
		}
	}
	return sections
}

// grouped returns opts in canonical order: sections in first-seen order,
// options of one section in their relative order.
func grouped(opts []Option) []Option {
	return groupedBy(opts, sectionOrder(opts))
}

func groupedBy(opts []Option, sections []string) []Option {
	out := make([]Option, 0, len(opts))
	if len(sections) <= fewSections {
		for _, s := range sections {
			for _, o := range opts {
				if o.Section == s {
					out = append(out, o)
				}
			}
		}
		return out
	}
	index := make(map[string]int, len(sections))
	for i, s := range sections {
		index[s] = i
	}
	buckets := make([][]Option, len(sections))
	for _, o := range opts {
		i := index[o.Section]
		buckets[i] = append(buckets[i], o)
	}
	for _, b := range buckets {
		out = append(out, b...)
	}
	return out
}

// Serialize returns the canonical form: sections in first-seen order, all
// options of a section under one header as Name=Value lines, a blank line
// between sections and a trailing newline. It equals go-systemd's
// unit.Serialize of the same options.
func (f *File) Serialize() string { return serialize(f.Options) }

func serialize(opts []Option) string {
	if len(opts) == 0 {
		return ""
	}
	sections := sectionOrder(opts)
	var b strings.Builder
	b.Grow(sizeOf(opts, sections))
	writeSection := func(i int, s string) {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteByte('[')
		b.WriteString(s)
		b.WriteString("]\n")
	}
	writeOption := func(o Option) {
		b.WriteString(o.Name)
		b.WriteByte('=')
		b.WriteString(o.Value)
		b.WriteByte('\n')
	}
	if len(sections) <= fewSections {
		for i, s := range sections {
			writeSection(i, s)
			for _, o := range opts {
				if o.Section == s {
					writeOption(o)
				}
			}
		}
		return b.String()
	}
	n := 0
	for i, o := range groupedBy(opts, sections) {
		if i == 0 || o.Section != sections[n-1] {
			writeSection(n, o.Section)
			n++
		}
		writeOption(o)
	}
	return b.String()
}

// serializedSize is the length of the canonical form of opts.
func serializedSize(opts []Option) int {
	if len(opts) == 0 {
		return 0
	}
	return sizeOf(opts, sectionOrder(opts))
}

// sizeOf is the length of the canonical form of opts, whose sections are
// sections: "[S]\n" per section, "N=V\n" per option, and a blank line
// between sections.
func sizeOf(opts []Option, sections []string) int {
	size := len(sections) - 1
	for _, o := range opts {
		size += len(o.Name) + len(o.Value) + 2
	}
	for _, s := range sections {
		size += len(s) + 3
	}
	return size
}

// Hash is the SHA1 of the canonical form.
func (f *File) Hash() Hash { return HashOf(f.Serialize()) }

// Description is the first Description in [Unit], or "".
func (f *File) Description() string {
	for _, o := range f.Options {
		if o.Section == "Unit" && o.Name == "Description" {
			return o.Value
		}
	}
	return ""
}

// HasInstall reports whether the file has an [Install] section with at
// least one option (a section without options does not survive parsing).
func (f *File) HasInstall() bool {
	for _, o := range f.Options {
		if o.Section == "Install" {
			return true
		}
	}
	return false
}

// Values returns every value of name in section, in file order, as
// written (quoted [X-Fleet] multi-values are not split here).
func (f *File) Values(section, name string) []string {
	var vals []string
	for _, o := range f.Options {
		if o.Section == section && o.Name == name {
			vals = append(vals, o.Value)
		}
	}
	return vals
}

// quoteClipped quotes s, or its first 64 bytes followed by "..." when it
// is longer, for error messages about hostile input.
func quoteClipped(s string) string {
	const max = 64
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	q := fmt.Sprintf("%q", s[:max])
	return q[:len(q)-1] + `..."`
}
