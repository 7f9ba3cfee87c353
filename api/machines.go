package api

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"strings"

	"github.com/fleet-next/fleet/unit"
)

// listMachines serves GET /machines: one page of live machines sorted by
// ID, cut from one read of all of them.
func (s *server) listMachines(w http.ResponseWriter, r *http.Request) {
	tok, ok := s.pageToken(w, r)
	if !ok {
		return
	}
	all, err := s.reg.Machines(r.Context())
	if err != nil {
		s.internalError(w, r, fmt.Errorf("list machines: %w", err))
		return
	}
	page, next := paginate(all, tok)
	resp := MachinePage{NextPageToken: next}
	if len(page) > 0 {
		resp.Machines = make([]*Machine, len(page))
		for i, m := range page {
			resp.Machines[i] = machineToAPI(m)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// MetadataOp is one operation of a PATCH /machines request body: op is add,
// replace or remove, path is "/<machineID>/metadata/<key>", and the new
// value is nested as {"value": "<string>"}.
type MetadataOp struct {
	Op    MetadataOpType `json:"op"`
	Path  string         `json:"path"`
	Value MetadataValue  `json:"value"`
}

// MetadataValue carries the value of a MetadataOp.
type MetadataValue struct {
	Value string `json:"value"`
}

// MetadataOpType names what a MetadataOp does.
type MetadataOpType string

// Metadata operations. Add and Replace both set the key.
const (
	MetadataAdd     MetadataOpType = "add"
	MetadataReplace MetadataOpType = "replace"
	MetadataRemove  MetadataOpType = "remove"
)

func (t MetadataOpType) String() string { return string(t) }

// metadataPath matches "/<machineID>/metadata/<key>". A key is 1 to 253
// letters, digits and _.- and does not start with '.', so that no key
// reads like a path ("..").
var metadataPath = regexp.MustCompile(`^/([^/]+)/metadata/([A-Za-z0-9_-][A-Za-z0-9_.-]{0,252})$`)

// MaxMetadataOps bounds the operations of one PATCH: they are applied in a
// single store transaction, which etcd limits to 128 operations.
const MaxMetadataOps = 128

// patchMachines validates every operation first, then applies all of them
// in one atomic registry call, which fails (404) if a machine they name is
// not registered.
func (s *server) patchMachines(w http.ResponseWriter, r *http.Request) {
	var ops []MetadataOp
	if err := readJSON(w, r, MaxPatchBodyBytes, &ops, nil); err != nil {
		writeBodyError(w, err)
		return
	}
	if len(ops) > MaxMetadataOps {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("too many operations: %d (at most %d in one request)", len(ops), MaxMetadataOps))
		return
	}
	changes, err := metadataChanges(ops)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(changes) > 0 {
		err := s.reg.SetMachineMetadata(r.Context(), changes)
		switch {
		case isNotFound(err):
			writeError(w, http.StatusNotFound, err.Error())
			return
		case err != nil:
			s.internalError(w, r, fmt.Errorf("set machine metadata: %w", err))
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNoContent)
}

// metadataChanges validates ops and converts them to registry changes.
func metadataChanges(ops []MetadataOp) ([]unit.MetadataChange, error) {
	changes := make([]unit.MetadataChange, 0, len(ops))
	for _, op := range ops {
		switch op.Op {
		case MetadataAdd, MetadataReplace, MetadataRemove:
		default:
			return nil, errors.New("invalid op: expect add, remove, or replace")
		}
		m := metadataPath.FindStringSubmatch(op.Path)
		if m == nil {
			return nil, errors.New("machine metadata path invalid")
		}
		c := unit.MetadataChange{MachineID: m[1], Key: m[2]}
		if op.Op != MetadataRemove {
			if op.Value.Value == "" {
				return nil, errors.New("invalid value: add and replace require a value")
			}
			if i := strings.IndexFunc(op.Value.Value, isControl); i >= 0 {
				return nil, fmt.Errorf("invalid value of metadata key %s: it holds the control character %q",
					c.Key, op.Value.Value[i])
			}
			c.Value = op.Value.Value
		}
		changes = append(changes, c)
	}
	return changes, nil
}

// isControl reports whether r is a C0 control character other than tab.
func isControl(r rune) bool { return r < 0x20 && r != '\t' }

// machineToAPI converts a machine to its wire form.
func machineToAPI(m unit.Machine) *Machine {
	out := &Machine{ID: m.ID, PrimaryIP: m.PublicIP}
	if len(m.Metadata) > 0 {
		out.Metadata = maps.Clone(m.Metadata)
	}
	return out
}
