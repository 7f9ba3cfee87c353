package fleetd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fleet-next/fleet/systemd/launch"
)

// Dev mode keeps everything it makes in one temporary directory,
// /tmp/fleetd-dev-XXXX: the embedded etcd's data, the API socket and the
// private systemd's runtime directory, whose cgroup is named after it. An
// "owner" file there holds fleetd's PID. A clean exit removes it all; a
// fleetd killed with -9 cannot, so the next fleetd --dev removes the
// directories (and cgroups and processes) whose owner is gone.

const (
	devDirPattern = "fleetd-dev-"
	devOwnerFile  = "owner"
)

// makeDevDir creates the dev data directory and records its owner.
func makeDevDir() (string, error) {
	dir, err := os.MkdirTemp("", devDirPattern)
	if err != nil {
		return "", fmt.Errorf("create dev data dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, devOwnerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("record dev data dir owner: %w", err)
	}
	return dir, nil
}

// devCgroup is the cgroup of the private systemd of the dev directory dir.
func devCgroup(dir string) string {
	return "fleet/" + filepath.Base(dir)
}

// devRuntimeDir is the runtime directory of the private systemd of dir.
func devRuntimeDir(dir string) string { return filepath.Join(dir, "sd") }

// clearDevDebris removes the dev directories, cgroups and processes of
// fleetd --dev runs that ended without cleaning up. Only directories owned
// by this user whose owner process is gone are touched.
func clearDevDebris(ctx context.Context, log *slog.Logger) {
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), devDirPattern+"*"))
	if err != nil {
		return
	}
	for _, dir := range dirs {
		st, err := os.Lstat(dir)
		if err != nil || !st.IsDir() || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, devOwnerFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && alive(pid) {
			continue
		}
		if errors.Is(err, fs.ErrNotExist) && time.Since(st.ModTime()) < time.Minute {
			continue // being created right now by another fleetd
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		cerr := launch.RemoveCgroup(cctx, devCgroup(dir))
		cancel()
		if cerr != nil {
			log.Warn("removing the cgroup of an earlier dev run", "dir", dir, "err", cerr)
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("removing an earlier dev run's directory", "dir", dir, "err", err)
			continue
		}
		log.Info("removed what an earlier fleetd --dev left behind", "dir", dir)
	}
}

// alive reports whether a process with this PID exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
