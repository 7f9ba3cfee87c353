package agent

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/fleet-next/fleet/unit"
)

// ActionKind is one step the agent takes against systemd.
type ActionKind int

// Action kinds, in the order a plan applies them.
const (
	ActStop        ActionKind = iota + 1 // stop a running unit
	ActDisable                           // remove runtime links and enablement
	ActRemoveFile                        // delete the unit file
	ActResetFailed                       // forget a failed state
	ActWriteFile                         // write (or rewrite) the unit file
	ActLink                              // link the unit file at runtime
	ActEnable                            // enable [Install] at runtime
	ActReload                            // daemon-reload, once per plan
	ActStart                             // start the unit
)

func (k ActionKind) String() string {
	switch k {
	case ActStop:
		return "stop"
	case ActDisable:
		return "disable"
	case ActRemoveFile:
		return "remove-file"
	case ActResetFailed:
		return "reset-failed"
	case ActWriteFile:
		return "write-file"
	case ActLink:
		return "link"
	case ActEnable:
		return "enable"
	case ActReload:
		return "reload"
	case ActStart:
		return "start"
	}
	return fmt.Sprintf("ActionKind(%d)", int(k))
}

// Action is one typed step of a plan.
type Action struct {
	Kind    ActionKind
	Unit    string // "" for ActReload
	Content string // ActWriteFile
	Reason  string
}

func (a Action) String() string {
	if a.Unit == "" {
		return a.Kind.String()
	}
	return a.Kind.String() + " " + a.Unit
}

// Actual is what this host has for one unit.
type Actual struct {
	Hash    unit.Hash // hash of the unit file on disk
	Systemd unit.SystemdState
	// Launched is true once the agent has started the unit (or, after a
	// restart, when systemd shows it running): the agent does not start it
	// again, so a unit that exits or fails is left to systemd's Restart=.
	Launched bool
}

// Running reports whether systemd is running (or starting) the unit.
func (a Actual) Running() bool {
	switch a.Systemd.ActiveState {
	case "active", "activating", "reloading", "deactivating":
		return true
	}
	return false
}

// Plan computes the actions that bring this host from actual to desired.
// It is pure and deterministic: actions are grouped by kind in application
// order and sorted by unit name within a kind. Planning the result of a
// fully applied plan yields no actions.
func Plan(desired map[string]unit.Placement, actual map[string]Actual, hasInstall func(content string) bool) []Action {
	var acts []Action
	reload := false
	for _, name := range slices.Sorted(maps.Keys(actual)) {
		a := actual[name]
		if _, want := desired[name]; want {
			continue
		}
		if a.Running() {
			acts = append(acts, Action{Kind: ActStop, Unit: name, Reason: "not scheduled here"})
		}
		acts = append(acts,
			Action{Kind: ActDisable, Unit: name},
			Action{Kind: ActRemoveFile, Unit: name},
			Action{Kind: ActResetFailed, Unit: name})
		reload = true
	}
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		p := desired[name]
		a, have := actual[name]
		launch := p.Desired == unit.StateLaunched
		switch {
		case !have:
			acts = append(acts, Action{Kind: ActWriteFile, Unit: name, Content: p.Content},
				Action{Kind: ActLink, Unit: name})
			if hasInstall != nil && hasInstall(p.Content) {
				acts = append(acts, Action{Kind: ActEnable, Unit: name})
			}
			reload = true
			if launch {
				acts = append(acts, Action{Kind: ActStart, Unit: name})
			}
		case a.Hash != p.Hash:
			// New contents: stop the old ones first, then start the new. A
			// launched unit that should only be loaded is stopped too, which
			// ends its launch.
			if a.Running() || (!launch && a.Launched) {
				acts = append(acts, Action{Kind: ActStop, Unit: name, Reason: "contents changed"})
			}
			acts = append(acts, Action{Kind: ActWriteFile, Unit: name, Content: p.Content},
				Action{Kind: ActLink, Unit: name})
			if hasInstall != nil && hasInstall(p.Content) {
				acts = append(acts, Action{Kind: ActEnable, Unit: name})
			}
			reload = true
			if launch {
				acts = append(acts, Action{Kind: ActStart, Unit: name})
			}
		case a.Systemd.LoadState != "" && a.Systemd.LoadState != "loaded":
			// The file is there but systemd has not loaded it (e.g. a
			// reload was lost): link and reload again.
			acts = append(acts, Action{Kind: ActLink, Unit: name})
			reload = true
			if launch && !a.Launched {
				acts = append(acts, Action{Kind: ActStart, Unit: name})
			}
			if !launch && a.Launched {
				acts = append(acts, Action{Kind: ActStop, Unit: name, Reason: "desired state loaded"})
			}
		case launch && !a.Launched:
			acts = append(acts, Action{Kind: ActStart, Unit: name})
		case !launch && a.Launched:
			// Only what the agent launched is stopped: a loaded unit that
			// systemd started on its own (a WantedBy= target, a socket, a
			// timer) is systemd's business, as in fleet.
			acts = append(acts, Action{Kind: ActStop, Unit: name, Reason: "desired state loaded"})
		}
	}
	if reload {
		acts = append(acts, Action{Kind: ActReload})
	}
	sort.SliceStable(acts, func(i, j int) bool {
		if acts[i].Kind != acts[j].Kind {
			return acts[i].Kind < acts[j].Kind
		}
		return acts[i].Unit < acts[j].Unit
	})
	return acts
}

// Without returns plan without the actions of the units in skip (units
// waiting for a retry). Its daemon-reload stays only if an action that
// needs one stays.
func Without(plan []Action, skip map[string]bool) []Action {
	if len(skip) == 0 {
		return plan
	}
	out := make([]Action, 0, len(plan))
	needReload := false
	for _, a := range plan {
		if a.Unit != "" && skip[a.Unit] {
			continue
		}
		switch a.Kind {
		case ActDisable, ActRemoveFile, ActWriteFile, ActLink, ActEnable:
			needReload = true
		case ActReload:
			if !needReload {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}
