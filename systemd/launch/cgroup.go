package launch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Filesystem magic numbers of cgroup mounts (statfs f_type).
const (
	cgroupV1Magic = 0x27e0eb
	cgroupV2Magic = 0x63677270
)

// cgroupBase is where the cgroup hierarchies are mounted.
const cgroupBase = "/sys/fs/cgroup"

// cgroupRoots lists the hierarchies a manager must be moved into: the named
// systemd (v1) hierarchy and the unified (v2) one on a hybrid host, or the
// single unified hierarchy on a pure cgroup2 host.
func cgroupRoots(base string) ([]string, error) {
	if isFS(base, cgroupV2Magic) {
		return []string{base}, nil
	}
	var roots []string
	if p := filepath.Join(base, "systemd"); isFS(p, cgroupV1Magic) {
		roots = append(roots, p)
	}
	if p := filepath.Join(base, "unified"); isFS(p, cgroupV2Magic) {
		roots = append(roots, p)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("find cgroup hierarchies: no name=systemd or cgroup2 mount under %s", base)
	}
	return roots, nil
}

func isFS(p string, magic int64) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return false
	}
	return int64(st.Type) == magic
}

// validCgroupName checks that name is a relative, clean cgroup path that
// stays below the hierarchy root.
func validCgroupName(name string) error {
	switch {
	case name == "":
		return errors.New("empty cgroup name")
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("cgroup name %q must be relative", name)
	case path.Clean(name) != name || name == "." || strings.HasPrefix(name, ".."):
		return fmt.Errorf("cgroup name %q must be a clean path below the hierarchy root", name)
	}
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, "cgroup.") || strings.HasPrefix(part, ".") {
			return fmt.Errorf("cgroup name %q has a reserved component %q", name, part)
		}
	}
	return nil
}

// cgroupTree is one manager's cgroup subtree, present in every hierarchy.
type cgroupTree struct {
	leaves  []string // <root>/<name> for every hierarchy
	parents []string // <root>/<ancestor of name>, deepest first
}

// createCgroups makes <root>/<name> in every root.
func createCgroups(roots []string, name string) (*cgroupTree, error) {
	t := &cgroupTree{}
	parts := strings.Split(name, "/")
	for _, root := range roots {
		leaf := filepath.Join(root, name)
		t.leaves = append(t.leaves, leaf)
		for i := len(parts) - 1; i > 0; i-- {
			t.parents = append(t.parents, filepath.Join(root, filepath.Join(parts[:i]...)))
		}
		if err := mkdirAllRetry(leaf); err != nil {
			return t, fmt.Errorf("create cgroup: %w", err)
		}
	}
	return t, nil
}

// mkdirAllRetry is os.MkdirAll that tolerates another manager removing an
// empty shared parent cgroup while the path is being created.
func mkdirAllRetry(dir string) error {
	const attempts = 5
	var err error
	for range attempts {
		if err = os.MkdirAll(dir, 0o755); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return err
}

// procsFiles are the cgroup.procs files a process writes its PID into to
// join the subtree.
func (t *cgroupTree) procsFiles() []string {
	files := make([]string, len(t.leaves))
	for i, leaf := range t.leaves {
		files[i] = filepath.Join(leaf, "cgroup.procs")
	}
	return files
}

// remove kills every process left in the subtree, removes its directories
// depth-first and then removes the parent cgroups of the name if no other
// subtree uses them any more.
func (t *cgroupTree) remove(ctx context.Context) error {
	var errs []error
	for _, leaf := range t.leaves {
		if err := removeSubtree(ctx, leaf); err != nil {
			errs = append(errs, err)
		}
	}
	for _, dir := range t.parents {
		err := syscall.Rmdir(dir)
		if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EBUSY) &&
			!errors.Is(err, syscall.ENOTEMPTY) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// removeSubtree removes dir and every cgroup below it, children first,
// killing the processes in each one before removing it.
func removeSubtree(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list cgroup %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeSubtree(ctx, filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	const poll = 10 * time.Millisecond
	for {
		if err := killProcs(dir); err != nil {
			return err
		}
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.ENOTEMPTY) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove cgroup %s: %w (last error: %w)", dir, ctx.Err(), err)
		case <-time.After(poll):
		}
	}
}

// killProcs sends SIGKILL to every process listed in dir/cgroup.procs.
func killProcs(dir string) error {
	pids, err := readPIDs(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill process %d in cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

func readPIDs(file string) ([]int, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cgroup procs: %w", err)
	}
	defer f.Close()
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
		if err != nil || pid <= 0 {
			continue
		}
		pids = append(pids, pid)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read cgroup procs: %w", err)
	}
	return pids, nil
}

// RemoveCgroup removes what a manager started with CgroupName name left in
// the cgroup hierarchies after its owner died without stopping it (kill
// -9): every process still in the subtree is killed and the subtree and
// its unused parents are removed. It is not an error if nothing is left.
func RemoveCgroup(ctx context.Context, name string) error {
	if err := validCgroupName(name); err != nil {
		return err
	}
	roots, err := cgroupRoots(cgroupBase)
	if err != nil {
		return err
	}
	t := &cgroupTree{}
	parts := strings.Split(name, "/")
	for _, root := range roots {
		t.leaves = append(t.leaves, filepath.Join(root, name))
		for i := len(parts) - 1; i > 0; i-- {
			t.parents = append(t.parents, filepath.Join(root, filepath.Join(parts[:i]...)))
		}
	}
	return t.remove(ctx)
}
