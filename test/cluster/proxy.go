package cluster

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Proxy is a TCP proxy between one host and an etcd member that a test can
// cut to simulate a partition. It listens on loopback only.
type Proxy struct {
	ln      net.Listener
	network string // of the target: "tcp" or "unix"
	target  string

	mu     sync.Mutex // guards cut, conns and closed
	cut    bool
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewProxy listens on 127.0.0.1 on a free port and forwards to target, a
// TCP address (host:port) or, with a "unix:" prefix, a unix socket path.
func NewProxy(target string) (*Proxy, error) {
	network := "tcp"
	if path, ok := strings.CutPrefix(target, "unix:"); ok {
		network, target = "unix", path
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, network: network, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listen address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut drops every connection and refuses new ones until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// Heal lets connections through again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// IsCut reports whether the proxy is cut.
func (p *Proxy) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// Close stops the proxy and waits for its goroutines. Idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !p.track(in) {
			_ = in.Close()
			continue
		}
		out, err := net.DialTimeout(p.network, p.target, 5*time.Second)
		if err != nil || !p.track(out) {
			if out != nil {
				_ = out.Close()
			}
			p.untrack(in)
			continue
		}
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	p.untrack(dst)
	p.untrack(src)
}

// ProxySet is one host's link to etcd: a proxy to every member. Cutting it
// partitions the host from the whole etcd cluster.
type ProxySet struct {
	proxies []*Proxy
}

// Cut drops every connection to every member and refuses new ones until
// Heal.
func (s *ProxySet) Cut() {
	for _, p := range s.proxies {
		p.Cut()
	}
}

// Heal lets connections through to every member again.
func (s *ProxySet) Heal() {
	for _, p := range s.proxies {
		p.Heal()
	}
}

// IsCut reports whether the set is cut (Cut called and Heal not since).
func (s *ProxySet) IsCut() bool {
	return len(s.proxies) > 0 && s.proxies[0].IsCut()
}

// Addrs are the proxies' listen addresses (host:port), one per member, in
// member order.
func (s *ProxySet) Addrs() []string {
	addrs := make([]string, len(s.proxies))
	for i, p := range s.proxies {
		addrs[i] = p.Addr()
	}
	return addrs
}

// Close stops every proxy. Idempotent.
func (s *ProxySet) Close() {
	for _, p := range s.proxies {
		p.Close()
	}
}

// newProxySet starts a proxy to each target; on error it closes those it
// started.
func newProxySet(targets []string) (*ProxySet, error) {
	s := &ProxySet{}
	for _, t := range targets {
		p, err := NewProxy(t)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.proxies = append(s.proxies, p)
	}
	return s, nil
}
