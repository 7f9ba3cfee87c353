package registry

import "strings"

// DefaultPrefix is fleet's key prefix; on etcd v3 it is a separate key space
// from fleet's v2 data, so both can share one etcd cluster.
const DefaultPrefix = "/_coreos.com/fleet/"

// Key layout under the prefix P:
//
//	P acl/<digest>                 a grant: role, subject, units glob                 (API)
//	P agent-states/<unit>/<machine> systemd state of a unit on a machine; on the machine lease (agent)
//	P audit/<nanos>-<random>       one audit trail entry, oldest first                 (API)
//	P bridge/<machine>/ask/<id>    a request relayed to a machine; on its exchange's lease (see relay.go)
//	P bridge/<machine>/ans/<id>/<n> chunk n of the answer to a machine's request; same lease
//	P engine/leader/holder         the engine leader's machine ID; on its election lease (engines)
//	P machines/<machine>           presence: ID, IP, metadata, version; on the machine lease (agent)
//	P metadata/<machine>/<key>     dynamic metadata set through the API                (API)
//	P reasons/<unit>               why a unit cannot be placed                         (engine)
//	P refusals/<unit>/<machine>    a machine refused a version of a unit; on the machine lease (agent)
//	P schedule/<machine>/<unit>    placement: hash, desired state, contents           (engine; watched by that machine's agent only)
//	P units/<unit>                 unit record: name, desired state, contents, hash  (API)
//
// Everything from machines/ to the end of the prefix is what the engine
// needs, and nothing else sorts there: the engine follows the cluster with a
// single watch on that range, so each revision arrives whole and in order.
// Agent states, which change most often, grants, the audit trail and the
// bridge sort before it and are not watched.
type keys struct{ prefix string }

func newKeys(prefix string) keys {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return keys{prefix: prefix}
}

func (k keys) units() string                  { return k.prefix + "units/" }
func (k keys) unit(name string) string        { return k.units() + name }
func (k keys) schedules() string              { return k.prefix + "schedule/" }
func (k keys) schedule(machine string) string { return k.schedules() + machine + "/" }
func (k keys) placement(machine, unit string) string {
	return k.schedule(machine) + unit
}
func (k keys) reasons() string           { return k.prefix + "reasons/" }
func (k keys) reason(unit string) string { return k.reasons() + unit }
func (k keys) refusals() string          { return k.prefix + "refusals/" }
func (k keys) refusal(unit, machine string) string {
	return k.refusals() + unit + "/" + machine
}
func (k keys) machines() string                  { return k.prefix + "machines/" }
func (k keys) machine(id string) string          { return k.machines() + id }
func (k keys) states() string                    { return k.prefix + "agent-states/" }
func (k keys) unitStates(unit string) string     { return k.states() + unit + "/" }
func (k keys) state(unit, machine string) string { return k.unitStates(unit) + machine }
func (k keys) metadata() string                  { return k.prefix + "metadata/" }
func (k keys) machineMetadata(id string) string  { return k.metadata() + id + "/" }
func (k keys) metadataKey(id, key string) string { return k.machineMetadata(id) + key }
func (k keys) election() string                  { return k.prefix + "engine/leader" }
func (k keys) leader() string                    { return k.election() + "/holder" }
func (k keys) acl() string                       { return k.prefix + "acl/" }
func (k keys) audit() string                     { return k.prefix + "audit/" }

// split2 splits "a/b" into a and b; ok is false unless there is exactly one '/'.
func split2(s string) (a, b string, ok bool) {
	i := strings.IndexByte(s, '/')
	if i < 0 || strings.IndexByte(s[i+1:], '/') >= 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// prefixEnd returns the end of the range of keys starting with p.
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}

// engineRange is the start of the key range the engine follows.
func (k keys) engineRange() string { return k.machines() }
