package systemd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/fleet-next/fleet/unit"
)

// unitFileMode is the mode of written unit files.
const unitFileMode = 0o644

// UnitFiles lists the unit files in the units directory with the hash of
// their contents. Dot files (temporaries of WriteUnitFile) and anything that
// is not a regular file are skipped.
func (m *Manager) UnitFiles(ctx context.Context) (map[string]unit.Hash, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(m.unitsDir)
	if err != nil {
		return nil, fmt.Errorf("list unit files: %w", err)
	}
	files := make(map[string]unit.Hash, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(m.unitsDir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while listing
		}
		if err != nil {
			return nil, fmt.Errorf("read unit file: %w", err)
		}
		files[e.Name()] = unit.HashOf(string(b))
	}
	return files, nil
}

// WriteUnitFile writes content to the units directory atomically: readers
// see either the old file or the whole new one.
func (m *Manager) WriteUnitFile(ctx context.Context, name, content string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	path, err := m.unitPath(name)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(m.unitsDir, "."+name+".tmp*")
	if err != nil {
		return fmt.Errorf("write unit file %s: %w", name, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.WriteString(content); err != nil {
		return fmt.Errorf("write unit file %s: %w", name, err)
	}
	if err := tmp.Chmod(unitFileMode); err != nil {
		return fmt.Errorf("write unit file %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write unit file %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write unit file %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write unit file %s: %w", name, err)
	}
	committed = true
	return nil
}

// RemoveUnitFile deletes the file; it is not an error if it is already gone.
func (m *Manager) RemoveUnitFile(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	path, err := m.unitPath(name)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove unit file %s: %w", name, err)
	}
	return nil
}

// unitPath is the path of name in the units directory. Names that could
// escape the directory or collide with temporaries are rejected.
func (m *Manager) unitPath(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("invalid unit file name %q", name)
	}
	return filepath.Join(m.unitsDir, name), nil
}

// HostUnit returns where the host defines name outside the units
// directory, or "" if only fleet does (or nobody). It asks systemd for the
// unit's LoadState and FragmentPath: a unit systemd finds (loaded, or
// failing to load) whose file is not fleet's, a masked unit and a unit
// with no file (transient, generated) all belong to the host.
func (m *Manager) HostUnit(ctx context.Context, name string) (string, error) {
	var props map[string]any
	err := m.call(ctx, func(c *sd.Conn) (err error) {
		props, err = c.GetUnitPropertiesContext(ctx, name)
		return err
	})
	if err != nil {
		if dbusErrorName(err) == errNameNoSuchUnit {
			return "", nil
		}
		return "", unitError("get properties of", name, err)
	}
	load, _ := props["LoadState"].(string)
	frag, _ := props["FragmentPath"].(string)
	switch {
	case load == "not-found" || load == "":
		return "", nil
	case load == "masked":
		return "masked", nil
	case frag == "":
		return "a unit without a file (transient or generated)", nil
	}
	if real, err := filepath.EvalSymlinks(frag); err == nil {
		if dir, err := filepath.EvalSymlinks(m.unitsDir); err == nil && filepath.Dir(real) == dir {
			return "", nil // fleet's own
		}
	}
	return frag, nil
}
