package registry_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

// opRecorder collects the requests reported to it.
type opRecorder struct {
	mu   sync.Mutex
	ops  []registry.Op
	errs []registry.Op
}

func (r *opRecorder) Request(op registry.Op, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	if err != nil {
		r.errs = append(r.errs, op)
	}
	if d < 0 {
		panic("negative request duration")
	}
}

func (r *opRecorder) take() (ops, errs []registry.Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ops, errs = r.ops, r.errs
	r.ops, r.errs = nil, nil
	return ops, errs
}

func TestInstrumentReportsEveryRequest(t *testing.T) {
	e := registrytest.StartEtcd(t)
	cli := e.Client(t)
	rec := &opRecorder{}
	registry.Instrument(cli, rec)
	r := registry.FromClient(cli, "", nil)
	content := "[Service]\nExecStart=/bin/true\n"
	m := unit.Machine{ID: "m1", PublicIP: "127.0.0.11"}

	tests := []struct {
		name     string
		run      func(ctx context.Context) error
		want     []registry.Op // in order
		wantErrs []registry.Op
		wantErr  bool
	}{
		{name: "create unit is one put",
			run: func(ctx context.Context) error {
				return r.CreateUnit(ctx, unit.Unit{Name: "a.service", Content: content, Hash: unit.HashOf(content)})
			},
			want: []registry.Op{registry.OpPut}},
		{name: "desired state is a read then a fenced transaction",
			run:  func(ctx context.Context) error { return r.SetDesiredState(ctx, "a.service", unit.StateLaunched) },
			want: []registry.Op{registry.OpGet, registry.OpTxn}},
		{name: "unit list reads the units, then their states and reasons in one transaction",
			run:  func(ctx context.Context) error { _, err := r.Units(ctx); return err },
			want: []registry.Op{registry.OpGet, registry.OpTxn}},
		{name: "a unit page reads only its span the same way",
			run:  func(ctx context.Context) error { _, err := r.UnitsPage(ctx, "", 10); return err },
			want: []registry.Op{registry.OpGet, registry.OpTxn}},
		{name: "register grants a lease and writes in a transaction",
			run: func(ctx context.Context) error {
				_, err := r.Register(ctx, m, "inst", 10*time.Second)
				return err
			},
			want: []registry.Op{registry.OpGet, registry.OpLeaseGrant, registry.OpTxn}},
		{name: "destroy is one delete",
			run:  func(ctx context.Context) error { return r.DestroyUnit(ctx, "a.service") },
			want: []registry.Op{registry.OpDelete}},
		{name: "a canceled request is reported as failed",
			run: func(ctx context.Context) error {
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				_, err := r.States(cctx, "", "")
				return err
			},
			want: []registry.Op{registry.OpGet}, wantErrs: []registry.Op{registry.OpGet}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec.take()
			if err := tt.run(ctxT(t)); (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			ops, errs := rec.take()
			if !slices.Equal(ops, tt.want) {
				t.Errorf("requests = %v, want %v", ops, tt.want)
			}
			if !slices.Equal(errs, tt.wantErrs) {
				t.Errorf("failed requests = %v, want %v", errs, tt.wantErrs)
			}
		})
	}
}

func TestInstrumentCoversTheElection(t *testing.T) {
	ctx := ctxT(t)
	e := registrytest.StartEtcd(t)
	cli := e.Client(t)
	rec := &opRecorder{}
	registry.Instrument(cli, rec)
	r := registry.FromClient(cli, "", nil)
	lease, err := r.Register(ctx, unit.Machine{ID: "m1"}, "inst", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rec.take()
	l, err := r.Campaign(ctx, "m1", lease, registry.MinElectionTTL)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	ops, _ := rec.take()
	if !slices.Contains(ops, registry.OpTxn) {
		t.Errorf("campaign and resign reported %v, want a transaction among them", ops)
	}
}
