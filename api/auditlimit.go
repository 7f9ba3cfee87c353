package api

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Refusals are audited so that an operator sees who tried what, but a
// refused caller is by definition one without rights: left unbounded, a
// loop of refused requests (any local user on a 0666 socket, anyone
// reaching a plain TCP listener as "anonymous") would push every real
// entry out of the trail, which keeps only audit_max_entries. So each
// subject's refusals go into the trail at a bounded rate; the ones over
// it are counted and the count travels on that subject's next recorded
// refusal (Entry.Suppressed). Accepted changes are always recorded: they
// need a grant, and a grant is the admin's decision.
const (
	refusalRate  = rate.Limit(1) // sustained refusals recorded per second and subject
	refusalBurst = 20
	// maxRefusalSubjects bounds the memory of the limiter; past it the
	// idlest subject is forgotten (its next refusal starts a full burst).
	maxRefusalSubjects = 4096
)

type refusalLimiter struct {
	mu       sync.Mutex
	now      func() time.Time
	subjects map[string]*refusalBudget
}

type refusalBudget struct {
	lim        *rate.Limiter
	suppressed int
	last       time.Time
}

func newRefusalLimiter(now func() time.Time) *refusalLimiter {
	return &refusalLimiter{now: now, subjects: make(map[string]*refusalBudget)}
}

// admit reports whether a refusal of subject is recorded now and, if so,
// how many of its refusals were dropped since its last recorded one.
func (l *refusalLimiter) admit(subject string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.subjects[subject]
	if b == nil {
		if len(l.subjects) >= maxRefusalSubjects {
			l.forgetIdlest()
		}
		b = &refusalBudget{lim: rate.NewLimiter(refusalRate, refusalBurst)}
		l.subjects[subject] = b
	}
	b.last = now
	if !b.lim.AllowN(now, 1) {
		b.suppressed++
		return false, 0
	}
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}

func (l *refusalLimiter) forgetIdlest() {
	var idlest string
	var at time.Time
	for s, b := range l.subjects {
		if idlest == "" || b.last.Before(at) {
			idlest, at = s, b.last
		}
	}
	delete(l.subjects, idlest)
}
