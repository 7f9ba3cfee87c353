package fleetctl

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

// Field keys of the list commands, in the order help shows them.
var (
	unitStateFields = []string{"unit", "load", "active", "sub", "machine", "hash", "reason"}
	unitFileFields  = []string{"unit", "global", "dstate", "state", "target", "tmachine", "hash", "desc", "reason"}
	machineFields   = []string{"machine", "ip", "metadata"}
)

// Default --fields of the list commands.
const (
	defaultUnitStateFields = "unit,machine,active,sub"
	defaultUnitFileFields  = "unit,hash,dstate,state,target"
	defaultMachineFields   = "machine,ip,metadata"
)

// emptyCell stands for a missing value in a table.
const emptyCell = "-"

// parseFields splits a --fields value and checks every key against valid.
func parseFields(spec string, valid []string) ([]string, error) {
	if spec == "" {
		return nil, failf("Must define output format")
	}
	fields := strings.Split(spec, ",")
	for _, f := range fields {
		if !slices.Contains(valid, f) {
			return nil, failf("Invalid key in output format: %q", f)
		}
	}
	return fields, nil
}

// table renders rows of cells under upper-cased field keys with
// text/tabwriter (minwidth 0, tabwidth 8, padding 1, tab padding).
func table(fields []string, rows [][]string, legend bool) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 8, 1, '\t', 0)
	if legend {
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(fields, "\t")))
	}
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	return b.String()
}

// cell returns s, or "-" when s is empty.
func cell(s string) string {
	if s == "" {
		return emptyCell
	}
	return s
}

// machineIDLegend is how a machine ID is shown: the first 8 characters and
// "...", or the full ID.
func machineIDLegend(id string, full bool) string {
	if full {
		return id
	}
	return unit.ShortID(id) + "..."
}

// machineLegend is the machine ID legend followed by "/<ip>" when the IP
// is known; "-" for no machine.
func machineLegend(id, ip string, full bool) string {
	if id == "" {
		return emptyCell
	}
	legend := machineIDLegend(id, full)
	if ip != "" {
		legend += "/" + ip
	}
	return legend
}

// machineIPs maps machine IDs to their primary IP.
func machineIPs(machines []*api.Machine) map[string]string {
	ips := make(map[string]string, len(machines))
	for _, m := range machines {
		if m != nil {
			ips[m.ID] = m.PrimaryIP
		}
	}
	return ips
}

// hashLegend shows a hash in its 7-character form, or 40 with full.
func hashLegend(h string, full bool) string {
	if !full && len(h) > 7 {
		return h[:7]
	}
	return cell(h)
}

// sortedStates returns the states without nils, sorted by unit name then
// machine ID; never nil.
func sortedStates(states []*api.UnitState) []*api.UnitState {
	sorted := slices.DeleteFunc(slices.Clone(states), func(s *api.UnitState) bool { return s == nil })
	slices.SortStableFunc(sorted, func(a, b *api.UnitState) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.MachineID, b.MachineID))
	})
	if sorted == nil {
		sorted = []*api.UnitState{}
	}
	return sorted
}

// sortedUnits returns the units without nils, sorted by name; never nil.
func sortedUnits(units []*api.Unit) []*api.Unit {
	sorted := slices.DeleteFunc(slices.Clone(units), func(u *api.Unit) bool { return u == nil })
	slices.SortStableFunc(sorted, func(a, b *api.Unit) int { return cmp.Compare(a.Name, b.Name) })
	if sorted == nil {
		sorted = []*api.Unit{}
	}
	return sorted
}

// sortedMachines returns the machines without nils, sorted by ID; never nil.
func sortedMachines(machines []*api.Machine) []*api.Machine {
	sorted := slices.DeleteFunc(slices.Clone(machines), func(m *api.Machine) bool { return m == nil })
	slices.SortStableFunc(sorted, func(a, b *api.Machine) int { return cmp.Compare(a.ID, b.ID) })
	if sorted == nil {
		sorted = []*api.Machine{}
	}
	return sorted
}

// unitFileDoc is one unit of list-unit-files -o json|yaml: the API's unit
// and what the table derives from its contents.
type unitFileDoc struct {
	*api.Unit
	Hash        string `json:"hash,omitempty"`
	Global      bool   `json:"global"`
	Description string `json:"description,omitempty"`
}

// unitFileDocs returns the documents of units, sorted by name; never nil.
func unitFileDocs(units []*api.Unit) []unitFileDoc {
	sorted := sortedUnits(units)
	docs := make([]unitFileDoc, 0, len(sorted))
	for _, u := range sorted {
		info := describeUnit(u)
		docs = append(docs, unitFileDoc{Unit: u, Hash: info.hash, Global: info.global, Description: info.description})
	}
	return docs
}

// formatUnits renders list-units: one row per unit state, sorted by unit
// name then machine ID. fields must come from parseFields.
func formatUnits(states []*api.UnitState, machines []*api.Machine, fields []string, full, legend bool) string {
	sorted := sortedStates(states)
	ips := machineIPs(machines)
	rows := make([][]string, 0, len(sorted))
	for _, s := range sorted {
		row := make([]string, len(fields))
		for i, f := range fields {
			switch f {
			case "unit":
				row[i] = cell(s.Name)
			case "load":
				row[i] = cell(s.SystemdLoadState)
			case "active":
				row[i] = cell(s.SystemdActiveState)
			case "sub":
				row[i] = cell(s.SystemdSubState)
			case "machine":
				row[i] = machineLegend(s.MachineID, ips[s.MachineID], full)
			case "hash":
				row[i] = hashLegend(s.Hash, full)
			case "reason":
				row[i] = cell(s.Reason)
			default:
				row[i] = emptyCell
			}
		}
		rows = append(rows, row)
	}
	return table(fields, rows, legend)
}

// formatUnitFiles renders list-unit-files: one row per unit, sorted by
// name. fields must come from parseFields.
func formatUnitFiles(units []*api.Unit, machines []*api.Machine, fields []string, full, legend bool) string {
	sorted := sortedUnits(units)
	ips := machineIPs(machines)
	rows := make([][]string, 0, len(sorted))
	for _, u := range sorted {
		info := describeUnit(u)
		row := make([]string, len(fields))
		for i, f := range fields {
			switch f {
			case "unit":
				row[i] = cell(u.Name)
			case "global":
				row[i] = strconv.FormatBool(info.global)
			case "dstate":
				row[i] = cell(u.DesiredState)
			case "state":
				if info.global {
					row[i] = emptyCell
				} else {
					row[i] = cell(u.CurrentState)
				}
			case "target", "tmachine":
				switch {
				case info.global:
					row[i] = "global"
				default:
					row[i] = machineLegend(u.MachineID, ips[u.MachineID], full)
				}
			case "hash":
				row[i] = hashLegend(info.hash, full)
			case "desc":
				row[i] = cell(info.description)
			case "reason":
				row[i] = cell(u.Reason)
			default:
				row[i] = emptyCell
			}
		}
		rows = append(rows, row)
	}
	return table(fields, rows, legend)
}

// formatMachines renders list-machines: one row per machine, sorted by ID.
// fields must come from parseFields.
func formatMachines(machines []*api.Machine, fields []string, full, legend bool) string {
	sorted := sortedMachines(machines)
	rows := make([][]string, 0, len(sorted))
	for _, m := range sorted {
		row := make([]string, len(fields))
		for i, f := range fields {
			switch f {
			case "machine":
				row[i] = machineIDLegend(m.ID, full)
			case "ip":
				row[i] = cell(m.PrimaryIP)
			case "metadata":
				row[i] = formatMetadata(m.Metadata)
			default:
				row[i] = emptyCell
			}
		}
		rows = append(rows, row)
	}
	return table(fields, rows, legend)
}

// formatMetadata joins metadata as k=v pairs sorted by key, or "-".
func formatMetadata(md map[string]string) string {
	if len(md) == 0 {
		return emptyCell
	}
	pairs := make([]string, 0, len(md))
	for _, k := range slices.Sorted(maps.Keys(md)) {
		pairs = append(pairs, k+"="+md[k])
	}
	return strings.Join(pairs, ",")
}
