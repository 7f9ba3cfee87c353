// Package engine decides where units run.
//
// Plan is a pure function from a snapshot of the cluster (units, live
// machines, current placements, the time and which machines are absent) to
// a list of typed changes: place, update, unplace, and the reasons units
// cannot be placed. It keeps valid placements where they are, spreads new
// ones to the least-loaded machine that satisfies a unit's [X-Fleet]
// requirements (ties broken by machine ID, units taken in submission
// order), and never moves units off machines that are merely absent for
// less than the loss grace.
//
// Engine is the I/O shell around Plan: it campaigns for leadership through
// its Store, follows a watch-fed view of the cluster while it leads, and
// applies each plan with writes fenced by its election, so a deposed
// leader cannot change the schedule.
package engine
