package fleetctl

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// outputFormat is the -o/--output value of the list and status commands.
type outputFormat int

const (
	outputText outputFormat = iota // fleet's tables, or systemctl's text for status
	outputJSON                     // indented JSON
	outputYAML                     // YAML of the same document
)

func (f outputFormat) String() string {
	switch f {
	case outputText:
		return "text"
	case outputJSON:
		return "json"
	case outputYAML:
		return "yaml"
	}
	return fmt.Sprintf("outputFormat(%d)", int(f))
}

// outputValue is the -o/--output flag.
type outputValue struct{ f *outputFormat }

func (v outputValue) String() string {
	if v.f == nil {
		return ""
	}
	return v.f.String()
}

func (v outputValue) Set(s string) error {
	switch s {
	case "text", "table":
		*v.f = outputText
	case "json":
		*v.f = outputJSON
	case "yaml":
		*v.f = outputYAML
	default:
		return fmt.Errorf("unknown output format %q: want text, json or yaml", s)
	}
	return nil
}

func (v outputValue) Type() string { return "format" }

// registerOutput declares -o/--output on fs; text says what the text
// format is, structured what json and yaml print.
func registerOutput(fs *pflag.FlagSet, f *outputFormat, text, structured string) {
	fs.VarP(outputValue{f}, "output", "o", "Output format: text ("+text+"), json or yaml ("+structured+").")
}

// writeStructured writes v as JSON or YAML. v must marshal to JSON; nil
// slices must be passed as empty ones so that they print as [].
func writeStructured(w io.Writer, f outputFormat, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	if f == outputYAML {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return fmt.Errorf("encode output as YAML: %w", err)
		}
	} else {
		b = append(b, '\n')
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeRecords prints records as -o asks: structured (an empty list, not
// null, when there are none), or a table under header whose columns are
// separated by tabs in header and in each row.
func writeRecords[T any](w io.Writer, f outputFormat, records []T, header string, row func(T) string) error {
	if records == nil {
		records = []T{}
	}
	if f != outputText {
		return writeStructured(w, f, records)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 1, '\t', 0)
	fmt.Fprintln(tw, header)
	for _, r := range records {
		fmt.Fprintln(tw, row(r))
	}
	return tw.Flush()
}
