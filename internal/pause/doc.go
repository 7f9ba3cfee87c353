// Package pause waits for a while unless a context ends first: the one
// sleep of retry loops, polls and settling periods.
package pause
