package unit

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxLine is systemd's LINE_MAX: a line, counting its end-of-line, must
// fit in it, so line contents are at most maxLine-1 bytes.
const maxLine = 2048

// Errors Parse and FromOptions return as they are, so callers may show
// them verbatim (fleet showed the first one to users) or test them with
// errors.Is.
var (
	ErrLineTooLong = fmt.Errorf("line too long (max %d bytes)", maxLine)
	ErrEmpty       = errors.New("unit file is empty")
	ErrNoOptions   = errors.New("not a unit file: no options in any section")
)

// checkLineLength reports ErrLineTooLong if text holds a run of maxLine or
// more bytes without '\r' or '\n'. This is the condition go-systemd tests,
// applied to every line rather than to whatever it has buffered.
func checkLineLength(text string) error {
	run := 0
	for i := 0; i < len(text); i++ {
		if c := text[i]; c == '\n' || c == '\r' {
			run = 0
			continue
		}
		run++
		if run >= maxLine {
			return ErrLineTooLong
		}
	}
	return nil
}

// lexer reads unit file text with the rules of go-systemd's deserializer.
// Sections and option names and values are, wherever possible, substrings
// of text, so parsing allocates little more than the option slice.
type lexer struct {
	text string
	pos  int
	// badName is the first option name that held invalid UTF-8, as
	// written; go-systemd replaces such bytes one by one with U+FFFD.
	badName string
}

// lexOptions splits text into options. It also returns the first option
// name that held invalid UTF-8, as written ("" if none). It does not check
// line lengths.
func lexOptions(text string) ([]Option, string, error) {
	l := lexer{text: text}
	opts := make([]Option, 0, estimateOptions(text))
	section, inSection := "", false
	for {
		if !inSection {
			// Before the first section anything but a section header or a
			// comment is skipped, character by character.
			i := strings.IndexAny(l.text[l.pos:], "[#;")
			if i < 0 {
				return opts, l.badName, nil
			}
			l.pos += i
		} else {
			r, size := utf8.DecodeRuneInString(l.text[l.pos:])
			if size == 0 {
				return opts, l.badName, nil
			}
			if unicode.IsSpace(r) {
				l.pos += size
				continue
			}
		}
		switch l.text[l.pos] {
		case '[':
			l.pos++
			name, err := l.sectionHeader()
			if err != nil {
				return nil, "", err
			}
			section, inSection = name, true
		case '#', ';':
			l.pos++
			l.skipComment()
		default:
			name, err := l.optionName()
			if err != nil {
				return nil, "", err
			}
			opts = append(opts, Option{Section: section, Name: name, Value: l.optionValue()})
		}
	}
}

// estimateOptions guesses the option count from the number of '=' signs,
// bounded so hostile input cannot make it allocate much up front.
func estimateOptions(text string) int {
	n := strings.Count(text, "=")
	return min(n, 256)
}

// line returns the line starting at pos without its end-of-line, the
// position after it, and whether the text ended before a '\n'. Like
// go-systemd it drops a '\r' before end of text but keeps one before '\n'.
func (l *lexer) line() (content string, next int, eof bool) {
	rest := l.text[l.pos:]
	if i := strings.IndexByte(rest, '\n'); i >= 0 {
		return rest[:i], l.pos + i + 1, false
	}
	return strings.TrimSuffix(rest, "\r"), len(l.text), true
}

// sectionHeader reads a section name after its '[' and checks that the
// rest of the line is blank. The name runs to the first ']', across lines.
func (l *lexer) sectionHeader() (string, error) {
	end := strings.IndexByte(l.text[l.pos:], ']')
	if end < 0 {
		return "", errors.New("unable to find end of section")
	}
	name := l.text[l.pos : l.pos+end]
	l.pos += end + 1
	garbage, next, _ := l.line()
	l.pos = next
	if g := strings.TrimSpace(garbage); g != "" {
		return "", fmt.Errorf("found garbage after section name %q: %q", name, g)
	}
	return name, nil
}

// skipComment skips the rest of a comment line and the lines it continues
// onto: a comment continues when its line, minus one trailing space, ends
// in a backslash.
func (l *lexer) skipComment() {
	for {
		content, next, _ := l.line()
		l.pos = next
		content = strings.TrimSuffix(content, " ")
		if !strings.HasSuffix(content, `\`) {
			return
		}
	}
}

// optionName reads up to the '=' of an option. A line break or the end of
// text before the '=' is a syntax error.
func (l *lexer) optionName() (string, error) {
	rest := l.text[l.pos:]
	end := strings.IndexAny(rest, "=\r\n")
	if end < 0 {
		return "", fmt.Errorf("option %q: unexpected end of file", rest)
	}
	if rest[end] != '=' {
		return "", fmt.Errorf("option %q: unexpected newline encountered while parsing option name", rest[:end])
	}
	raw := rest[:end]
	l.pos += end + 1
	if !utf8.ValidString(raw) {
		if l.badName == "" {
			l.badName = raw
		}
		var b strings.Builder
		for _, r := range raw {
			b.WriteRune(r)
		}
		raw = b.String()
	}
	return strings.TrimSpace(raw), nil
}

// optionValue reads an option value after its '='. A line ending in a
// backslash continues the value on the next non-blank line; the
// backslash and the newline stay in the value. A value whose last line
// was continued by a newline keeps one trailing newline.
func (l *lexer) optionValue() string {
	start, end := l.pos, l.pos
	for {
		content, next, eof := l.line()
		lineStart := l.pos
		l.pos = next
		if strings.TrimSpace(content) == "" {
			break
		}
		end = lineStart + len(content)
		if !strings.HasSuffix(content, `\`) {
			break
		}
		if !eof {
			end++ // keep the '\n'
		}
	}
	v := l.text[start:end]
	if strings.HasSuffix(v, "\n") {
		return strings.TrimSpace(v) + "\n"
	}
	return strings.TrimSpace(v)
}
