// Package unit is the domain model of the cluster: unit files, unit names,
// [X-Fleet] scheduling requirements, content hashes and the states a unit
// moves through. It does no I/O and holds no mutable package state; every
// function is safe for concurrent use as long as a *File is not modified
// while it is being read.
//
// Unit files. Parse reads a systemd unit file with exactly the syntax rules
// of go-systemd's unit deserializer, which fleet used: comments and
// blank lines are dropped, a value ending in a backslash continues on the
// next line (the backslash-newline is kept in the value), and no line may
// reach 2048 bytes ("line too long (max 2048 bytes)"). The parser is our
// own, allocation-light implementation of those rules; tests compare it
// with go-systemd on arbitrary input. Parse and FromOptions refuse contents
// that would not read back identically after serialization (fleet accepted
// some of them and then stored a different unit than it hashed), and refuse
// contents without any option ("unit file is empty").
//
// Canonical form and hash. File.Serialize is fleet's canonical form, byte
// for byte what go-systemd's unit.Serialize writes: sections in first-seen
// order, every option of a section grouped under its header as Name=Value,
// a blank line between sections and a trailing newline. File.Hash is the
// SHA1 of that form; it names unit contents across the cluster.
//
// Names. ValidateName applies fleet's checks in fleet's order with fleet's
// error texts; MangleName turns a command-line argument into a unit name;
// ParseName splits template and instance names.
//
// Requirements. File.Requirements reads the [X-Fleet] section (current and
// deprecated option names, quoted multi-values, %n %N %p %i specifiers),
// File.Validate rejects the combinations fleet rejects with fleet's
// messages plus a few malformed values fleet silently ignored, and
// MatchesMetadata, ConflictsWith, ReplacesUnit and MatchMachineID are the
// matching rules the scheduler and the agents share.
package unit
