package fleetd

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/fleet-next/fleet/api"
)

// checkHost answers 403 to a request whose Host header names neither an
// address the TCP listener at addr answers on nor a name of this machine,
// so that a web page cannot reach the API by DNS rebinding (a name the
// page's author controls, resolved to this listener). Allowed hosts, with
// any port (proxies and tunnels change it):
//
//   - no Host at all (HTTP/1.0 clients; browsers always send one);
//   - the listener's IP address; on a wildcard listener (0.0.0.0, [::])
//     any IP address, since it answers on every address packets reach;
//   - "localhost" and names under ".localhost", on a loopback or wildcard
//     listener;
//   - this machine's host name (os.Hostname, with or without its
//     domain), on a non-loopback listener;
//   - the names configured in api_allowed_hosts (a load balancer's, a DNS
//     alias).
//
// Other names must be replaced by an IP address in clients' endpoints.
func checkHost(addr *net.TCPAddr, hostname string, extra []string, h http.Handler) http.Handler {
	ip, _ := netip.AddrFromSlice(addr.IP)
	ip = ip.Unmap()
	hostname = strings.ToLower(strings.TrimSuffix(hostname, "."))
	allowed := make(map[string]bool, len(extra))
	for _, n := range extra {
		allowed[strings.ToLower(strings.TrimSuffix(n, "."))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if allowedHost(r.Host, ip, hostname) || allowed[hostName(r.Host)] {
			h.ServeHTTP(w, r)
			return
		}
		body, _ := json.Marshal(api.ErrorResponse{Error: api.Error{Code: http.StatusForbidden, Message: fmt.Sprintf(
			"host %q is not an address of this fleet API listener (%s): use its IP address, or localhost",
			r.Host, addr)}})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write(append(body, '\n')) // a failed write means the client is gone
	})
}

// hostName is the lower-case name in a Host header, without port or
// trailing dot.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// allowedHost applies checkHost's rules to the Host header host of a
// request on a listener bound to ip (unspecified for a wildcard).
func allowedHost(host string, ip netip.Addr, hostname string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1] // an IPv6 address without a port
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return ip.IsUnspecified() || a.Unmap() == ip
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return ip.IsLoopback() || ip.IsUnspecified()
	}
	if ip.IsLoopback() || hostname == "" {
		return false
	}
	short, _, _ := strings.Cut(hostname, ".")
	return name == hostname || name == short
}
