package bench

import (
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
)

// parseWithProfile parses args into fs with the -cpuprofile flag every
// child has, and starts that profile; the caller defers stop.
func parseWithProfile(fs *flag.FlagSet, args []string) (stop func(), err error) {
	profile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return startCPUProfile(*profile)
}

// startCPUProfile writes a CPU profile of this process to path until the
// returned function is called; "" profiles nothing.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
