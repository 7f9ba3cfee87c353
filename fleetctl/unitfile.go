package fleetctl

import (
	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

// apiOptions converts unit file options to their wire form.
func apiOptions(f *unit.File) []*api.UnitOption {
	opts := make([]*api.UnitOption, 0, len(f.Options))
	for _, o := range f.Options {
		opts = append(opts, &api.UnitOption{Section: o.Section, Name: o.Name, Value: o.Value})
	}
	return opts
}

// fileOf rebuilds the unit file of a unit received from the API.
func fileOf(u *api.Unit) (*unit.File, error) {
	opts := make([]unit.Option, 0, len(u.Options))
	for _, o := range u.Options {
		if o != nil {
			opts = append(opts, unit.Option{Section: o.Section, Name: o.Name, Value: o.Value})
		}
	}
	return unit.FromOptions(opts)
}

// unitInfo is what the list commands show about a unit's contents.
type unitInfo struct {
	hash        string // 40 hex characters; "" if the options are unusable
	global      bool
	description string
}

// describeUnit summarises the contents of u. Options that do not form a
// valid unit file give an empty summary rather than an error, so that one
// bad unit cannot hide the others from a listing.
func describeUnit(u *api.Unit) unitInfo {
	f, err := fileOf(u)
	if err != nil {
		return unitInfo{}
	}
	return unitInfo{hash: f.Hash().String(), global: f.IsGlobal(), description: f.Description()}
}

// isGlobal reports whether u is a global unit ([X-Fleet] Global=true).
func isGlobal(u *api.Unit) bool {
	return describeUnit(u).global
}
