package cluster

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/etcdembed"
)

// Credentials of a cluster with Options.EtcdAuth: a user that may read and
// write fleet's prefix only.
const (
	EtcdUser     = "fleet"
	EtcdPassword = "fleet-e2e-password"
)

// etcdSecurity is how the hosts and the harness reach a secured etcd.
type etcdSecurity struct {
	tls etcdembed.TLSFiles // with Options.EtcdTLS
}

// EtcdTLS returns the files a client presents to the cluster's etcd, and
// verifies it with (Options.EtcdTLS); zero otherwise.
func (c *Cluster) EtcdTLS() etcdembed.TLSFiles { return c.sec.tls }

// secure records how to reach the member just started and, with
// Options.EtcdAuth, turns etcd's authentication on.
func (c *Cluster) secure(e *etcdembed.Server) {
	c.sec.tls = e.TLS()
	if !c.opts.EtcdAuth {
		return
	}
	cli, err := e.NewClient()
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", EtcdPassword+"-root"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, EtcdUser); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, EtcdUser, registry.DefaultPrefix,
				strings.TrimSuffix(registry.DefaultPrefix, "/")+"0", 2 /* readwrite */)
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, EtcdUser, EtcdPassword); return err },
		func() error { _, err := cli.UserGrantRole(ctx, EtcdUser, EtcdUser); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
			c.t.Fatalf("enable etcd authentication (step %d): %v", i, err)
		}
	}
}

// etcdHostPort is the etcd member's host:port, which each host's proxy
// forwards to.
func (c *Cluster) etcdHostPort() string {
	return strings.TrimPrefix(strings.TrimPrefix(c.Endpoint, "http://"), "https://")
}

// etcdEnv is how a host reaches etcd through its proxies: their URLs and,
// with Options.EtcdTLS or EtcdAuth, its credentials.
func (c *Cluster) etcdEnv(proxies *ProxySet) []string {
	scheme := "http://"
	if strings.HasPrefix(c.Endpoint, "https://") {
		scheme = "https://"
	}
	var urls []string
	for _, addr := range proxies.Addrs() {
		urls = append(urls, scheme+addr)
	}
	env := []string{"FLEET_ETCD_SERVERS=" + strings.Join(urls, ",")}
	if f := c.sec.tls; f.CAFile != "" {
		env = append(env, "FLEET_ETCD_CAFILE="+f.CAFile, "FLEET_ETCD_CERTFILE="+f.CertFile, "FLEET_ETCD_KEYFILE="+f.KeyFile)
	}
	if c.opts.EtcdAuth {
		env = append(env, "FLEET_ETCD_USERNAME="+EtcdUser, "FLEET_ETCD_PASSWORD="+EtcdPassword)
	}
	return env
}

// connectConfig reaches etcd directly, with the hosts' credentials.
func (c *Cluster) connectConfig() registry.ConnectConfig {
	eps := c.Endpoints
	if len(eps) == 0 {
		eps = []string{c.Endpoint}
	}
	cfg := registry.ConnectConfig{Endpoints: eps, DialTimeout: 5 * time.Second,
		CAFile: c.sec.tls.CAFile, CertFile: c.sec.tls.CertFile, KeyFile: c.sec.tls.KeyFile}
	if c.opts.EtcdAuth {
		cfg.Username, cfg.Password = EtcdUser, EtcdPassword
	}
	return cfg
}

// AddHostEnv starts one more host with extra FLEET_* settings (which win
// over the harness's) and returns it without waiting for it to register.
func (c *Cluster) AddHostEnv(env ...string) *Host {
	h := c.newHost(len(c.Hosts))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		h.SetEnv(k, v)
	}
	c.Hosts = append(c.Hosts, h)
	h.Start()
	return h
}
