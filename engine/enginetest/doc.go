// Package enginetest holds the contract of engine.Store, as a suite any
// implementation must pass (Run), and Memory, an in-memory implementation
// that passes it.
//
// The registry's implementation (engine/enginestore on a real etcd) runs
// the same suite, so Memory may stand in for it where a test needs what a
// real store cannot give: the engine's loop run under testing/synctest,
// where its reconcile ticks, debounce and loss grace pass on a fake clock
// instead of in real time.
package enginetest
