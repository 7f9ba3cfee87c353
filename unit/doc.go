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
// error texts, then refuses the names systemd 252 or the agent cannot
// handle (types systemd no longer loads from files, hidden names, the
// units systemd keeps for itself, names too long for the agent's temporary
// files); MangleName turns a command-line argument into a unit name;
// ParseName splits template and instance names.
//
// Admission. ValidateName and File.Validate are the one check that both
// the API (before it stores a unit) and fleetctl (before it sends one)
// apply, so fleetctl refuses locally what the API would refuse. Validate
// refuses contents over MaxContentBytes (ErrTooLarge), lines systemd would
// read differently from fleet (control characters, text that is not
// UTF-8, options or sections without a name), [X-Fleet] values with
// unterminated quotes or non-boolean Global, fleet's impossible
// requirement combinations, and [Install] values that are not unit names.
// ReplacesCycle finds the Replaces cycle a unit would close.
//
// Requirements. File.Requirements reads the [X-Fleet] section (current and
// deprecated option names, quoted multi-values, %n %N %p %i specifiers),
// and MatchesMetadata, ConflictsWith, ReplacesUnit and MatchMachineID are
// the matching rules the scheduler and the agents share.
package unit
