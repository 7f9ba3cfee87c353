package fleetctl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// testCertificate returns a self-signed certificate and its key in PEM.
func testCertificate(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fleet test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return certPEM, keyPEM
}

func TestTLSConfig(t *testing.T) {
	certPEM, keyPEM := testCertificate(t)
	files := fakeFiles(map[string]string{"/c.pem": certPEM, "/k.pem": keyPEM, "/bad.pem": "not a certificate"})
	tests := []struct {
		name          string
		key, cert, ca string
		wantNil       bool
		wantCerts     int
		wantRoots     bool
		wantErr       string
	}{
		{name: "no files", wantNil: true},
		{name: "CA only", ca: "/c.pem", wantRoots: true},
		{name: "client certificate", key: "/k.pem", cert: "/c.pem", wantCerts: 1},
		{name: "client certificate and CA", key: "/k.pem", cert: "/c.pem", ca: "/c.pem", wantCerts: 1, wantRoots: true},
		{name: "certificate without key", cert: "/c.pem", wantErr: "must be given together"},
		{name: "key that does not match", key: "/c.pem", cert: "/c.pem", wantErr: "load client certificate"},
		{name: "missing CA file", ca: "/none.pem", wantErr: "read CA file"},
		{name: "CA file without certificate", ca: "/bad.pem", wantErr: "no PEM certificate found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := tlsConfig(func(p string) ([]byte, error) { return files(p, maxTLSFileBytes) }, tc.key, tc.cert, tc.ca)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("tlsConfig() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("tlsConfig(): %v", err)
			}
			if tc.wantNil {
				if conf != nil {
					t.Errorf("tlsConfig() = %+v, want nil", conf)
				}
				return
			}
			if conf.InsecureSkipVerify {
				t.Errorf("server verification disabled")
			}
			if len(conf.Certificates) != tc.wantCerts || (conf.RootCAs != nil) != tc.wantRoots {
				t.Errorf("tlsConfig() has %d client certificates and roots %v; want %d and %v",
					len(conf.Certificates), conf.RootCAs != nil, tc.wantCerts, tc.wantRoots)
			}
		})
	}
}
