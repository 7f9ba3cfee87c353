package registry_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/etcdembed"
	"github.com/fleet-next/fleet/unit"
)

// An etcd that refuses this client's TLS makes Register fail saying why,
// not only that it timed out.
func TestRegisterSaysWhyEtcdRefusesTheClientsTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := etcdembed.Start(ctx, etcdembed.Options{Dir: t.TempDir(), Fast: true, Private: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	good := e.TLS()
	other, err := etcdembed.GenerateTLS(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                string
		ca, cert, key, want string
	}{
		{"server of another CA", other.CAFile, good.CertFile, good.KeyFile, "x509: certificate signed by unknown authority"},
		{"client certificate of another CA", good.CAFile, other.CertFile, other.KeyFile, "remote error: tls: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := registry.Connect(registry.ConnectConfig{Endpoints: []string{e.Endpoint()}, CAFile: tc.ca,
				CertFile: tc.cert, KeyFile: tc.key, DialTimeout: time.Second, RequestTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			_, err = reg.Register(ctx, unit.Machine{ID: "m1"}, "i1", 10*time.Second)
			if err == nil || !strings.Contains(err.Error(), "etcd refuses this client's TLS") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Register = %v, want it to say etcd refuses this client's TLS: %s", err, tc.want)
			}
		})
	}
	reg, err := registry.Connect(registry.ConnectConfig{Endpoints: []string{e.Endpoint()}, CAFile: good.CAFile,
		CertFile: good.CertFile, KeyFile: good.KeyFile, DialTimeout: time.Second, RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := reg.Register(ctx, unit.Machine{ID: "m1"}, "i1", 10*time.Second); err != nil {
		t.Errorf("Register with the member's own files: %v", err)
	}
}
