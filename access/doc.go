// Package access is the domain of who may do what through the API: the
// identity of a caller (its subjects), the roles and the grants that bind
// them to subjects, the pure decision whether a caller may take an action
// on a target, and the audit record of a request. It does no I/O: the API
// asks it, the registry stores its grants and audit entries.
package access
