package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

// unitGetter is the registry lookup the resolver needs.
type unitGetter interface {
	Unit(ctx context.Context, name string) (*api.Unit, error)
}

// resolver turns command-line arguments into units: it looks them up in
// the registry and falls back to local unit files and templates (spec §2.2).
type resolver struct {
	api      unitGetter
	readFile func(path string, limit int64) ([]byte, error)
	stdout   io.Writer
	stderr   io.Writer
}

// createPolicy says how resolve treats the arguments of one command.
type createPolicy struct {
	// desired is the desired state of units created from local files or
	// templates.
	desired string
	// replace is --replace: a unit whose local file differs from the
	// registry is replaced, if replaceable reports true for its desired
	// state (nil: in any state).
	replace     bool
	replaceable func(desired string) bool
	// activate refuses template names: templates can only be submitted.
	activate bool
}

// resolved is one unit named on the command line.
type resolved struct {
	unit *api.Unit // the unit as it is, or will be once created
	// create is set when unit must be written: it is new, or it replaces
	// the registry's version (then unit.FleetState is the existing one).
	create bool
}

// resolve finds every unit named by args, in order and without duplicates.
// It creates nothing: every argument is checked before the caller writes
// anything, so one bad argument leaves the cluster untouched.
func (r *resolver) resolve(ctx context.Context, args []string, pol createPolicy) ([]resolved, error) {
	var out []resolved
	seen := make(map[string]bool, len(args))
	for _, arg := range args {
		name := unit.MangleName(arg)
		if err := unit.ValidateName(name); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if pol.activate && unit.ParseName(name).IsTemplate() {
			return nil, fmt.Errorf("cannot activate template %q", name)
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		existing, err := r.api.Unit(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("get unit %s: %w", name, err)
		}
		if existing != nil {
			res, err := r.checkReplace(arg, existing, pol)
			if err != nil {
				return nil, err
			}
			out = append(out, res)
			continue
		}
		f, err := r.findFile(ctx, arg, name)
		if err != nil {
			return nil, err
		}
		if err := r.validate(name, f); err != nil {
			return nil, err
		}
		out = append(out, resolved{
			unit:   &api.Unit{Name: name, Options: apiOptions(f), DesiredState: pol.desired},
			create: true,
		})
	}
	return out, nil
}

// checkReplace compares a registry unit with the local file named by arg,
// if there is one, and decides whether to replace it.
func (r *resolver) checkReplace(arg string, existing *api.Unit, pol createPolicy) (resolved, error) {
	keep := resolved{unit: existing}
	local, path, err := r.readLocal(arg, existing.Name)
	if err != nil || local == nil {
		return keep, err
	}
	if current, err := fileOf(existing); err == nil && current.Hash() == local.Hash() {
		if pol.replace {
			fmt.Fprintf(r.stdout, "Found same Unit(%s) in Registry, nothing to do\n", existing.Name)
		}
		return keep, nil
	}
	if !pol.replace {
		fmt.Fprintf(r.stderr, "WARNING: Unit %s in registry differs from local unit file %s. Add --replace to override.\n",
			existing.Name, path)
		return keep, nil
	}
	if pol.replaceable != nil && !pol.replaceable(existing.DesiredState) {
		fmt.Fprintf(r.stderr, "Warning: can not replace Unit(%s) in state '%s', use the appropriate command\n",
			existing.Name, existing.DesiredState)
		return keep, nil
	}
	if err := r.validate(existing.Name, local); err != nil {
		return keep, err
	}
	return resolved{
		unit:   &api.Unit{Name: existing.Name, Options: apiOptions(local), DesiredState: existing.DesiredState},
		create: true,
	}, nil
}

// findFile finds the contents of a unit that is not in the registry: a
// local file, else for an instance its template from the registry, else a
// local template file next to the argument.
func (r *resolver) findFile(ctx context.Context, arg, name string) (*unit.File, error) {
	f, _, err := r.readLocal(arg, name)
	if err != nil || f != nil {
		return f, err
	}
	n := unit.ParseName(name)
	if !n.IsInstance() {
		return nil, fmt.Errorf("unable to find Unit(%s) in Registry or on filesystem", name)
	}
	tmpl := n.Template()
	tu, err := r.api.Unit(ctx, tmpl)
	if err != nil {
		return nil, fmt.Errorf("get template unit %s: %w", tmpl, err)
	}
	if tu != nil {
		f, err := fileOf(tu)
		if err != nil {
			return nil, fmt.Errorf("template unit %s: %w", tmpl, err)
		}
		return f, nil
	}
	f, found, err := r.readUnitFile(filepath.Join(filepath.Dir(arg), tmpl))
	if err != nil || found {
		return f, err
	}
	return nil, fmt.Errorf("unable to find template Unit(%s) in Registry or on filesystem", tmpl)
}

// readLocal reads the first existing local file for arg; nil when there
// is none.
func (r *resolver) readLocal(arg, name string) (*unit.File, string, error) {
	for _, path := range localPaths(arg, name) {
		f, found, err := r.readUnitFile(path)
		if err != nil || found {
			return f, path, err
		}
	}
	return nil, "", nil
}

// localPaths lists where a unit file for arg may be found, in order: the
// argument itself, then the mangled unit name in the argument's directory
// ("hello" → "hello.service").
func localPaths(arg, name string) []string {
	paths := []string{arg}
	if filepath.Base(arg) != name {
		paths = append(paths, filepath.Join(filepath.Dir(arg), name))
	}
	return slices.Compact(paths)
}

// readUnitFile reads and parses a local unit file. found is false when
// nothing (or a directory) is at path. A file that is not regular (a FIFO,
// /dev/zero) or larger than unit.MaxContentBytes is refused without being
// read beyond that limit.
func (r *resolver) readUnitFile(path string) (f *unit.File, found bool, err error) {
	data, err := r.readFile(path, unit.MaxContentBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.EISDIR):
		return nil, false, nil
	case errors.Is(err, errTooLarge):
		return nil, true, fmt.Errorf("read unit file: %w, the most a unit may hold", err)
	case err != nil:
		return nil, true, fmt.Errorf("read unit file: %w", err)
	}
	f, err = unit.Parse(string(data))
	if err != nil {
		return nil, true, fmt.Errorf("unit file %s: %w", path, err)
	}
	return f, true, nil
}

// validate checks a unit file before it is sent to the cluster and prints
// its warnings (unknown [X-Fleet] keys).
func (r *resolver) validate(name string, f *unit.File) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("unit %s: %w", name, err)
	}
	for _, w := range f.Warnings() {
		fmt.Fprintf(r.stderr, "Unit %s: %s\n", name, w)
	}
	return nil
}
