package api

import (
	"fmt"
	"testing"
	"time"
)

// A subject's refusals are recorded up to the burst, then at the
// sustained rate; the ones left out are counted on its next recorded
// refusal; subjects do not share a budget.
func TestRefusalLimiter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newRefusalLimiter(func() time.Time { return now })
	for i := range refusalBurst {
		if ok, n := l.admit("anonymous"); !ok || n != 0 {
			t.Fatalf("refusal %d of the burst: ok=%v suppressed=%d", i, ok, n)
		}
	}
	for i := range 5 {
		if ok, _ := l.admit("anonymous"); ok {
			t.Fatalf("refusal %d past the burst recorded", i)
		}
	}
	if ok, n := l.admit("user:alice"); !ok || n != 0 {
		t.Fatalf("another subject: ok=%v suppressed=%d", ok, n)
	}
	now = now.Add(time.Second)
	if ok, n := l.admit("anonymous"); !ok || n != 5 {
		t.Fatalf("after a second: ok=%v suppressed=%d, want true 5", ok, n)
	}
	if ok, _ := l.admit("anonymous"); ok {
		t.Fatal("a second refusal in the same second recorded")
	}
}

// The limiter forgets the idlest subject past maxRefusalSubjects.
func TestRefusalLimiterBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newRefusalLimiter(func() time.Time { return now })
	for i := range maxRefusalSubjects + 10 {
		now = now.Add(time.Millisecond)
		l.admit(fmt.Sprintf("uid:%d", i))
	}
	if len(l.subjects) != maxRefusalSubjects {
		t.Fatalf("subjects remembered = %d, want %d", len(l.subjects), maxRefusalSubjects)
	}
	if _, ok := l.subjects["uid:0"]; ok {
		t.Fatal("the idlest subject is still remembered")
	}
	if _, ok := l.subjects[fmt.Sprintf("uid:%d", maxRefusalSubjects+9)]; !ok {
		t.Fatal("the latest subject is forgotten")
	}
}
