package fleetd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// API listeners. fleetd serves its API on:
//
//   - the sockets systemd passed by socket activation (LISTEN_FDS), and
//   - every api_listen entry,
//
// except that when activated sockets exist and api_listen was left at its
// default, only the activated sockets are served (so that fleet.socket
// alone decides where the API listens, as with fleet). An api_listen entry
// naming the same address as an activated socket is not opened again.

// apiListener is one socket the API is served on.
type apiListener struct {
	ln   net.Listener
	addr string // unix:///path or tcp://host:port
}

// listenAddr renders a listener's address in api_listen form.
func listenAddr(a net.Addr) string {
	switch a.Network() {
	case "unix":
		return "unix://" + a.String()
	case "tcp":
		return "tcp://" + a.String()
	}
	return a.Network() + "://" + a.String()
}

// toOpen returns the api_listen entries to open next to the activated
// sockets (given as api_listen addresses). canon maps an address to a
// canonical form, so that two spellings of one socket compare equal.
func toOpen(apiListen []string, explicit bool, activated []string, canon func(string) string) []string {
	if len(activated) > 0 && !explicit {
		return nil
	}
	act := make([]string, len(activated))
	for i, a := range activated {
		act[i] = canon(a)
	}
	var out []string
	for _, l := range apiListen {
		if !slices.Contains(act, canon(l)) {
			out = append(out, l)
		}
	}
	return out
}

// canonListen resolves symbolic links in the directory of a unix socket
// address (/var/run is usually a link to /run), leaving other addresses
// as they are.
func canonListen(l string) string {
	network, addr, err := ParseListen(l)
	if err != nil || network != "unix" {
		return l
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(addr))
	if err != nil {
		return l
	}
	return "unix://" + filepath.Join(dir, filepath.Base(addr))
}

// activatedListeners returns the stream sockets systemd passed to this
// process and removes the LISTEN_* variables from the environment.
func activatedListeners(log *slog.Logger) ([]apiListener, error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	var out []apiListener
	for i, ln := range lns {
		if ln == nil {
			log.Warn("ignoring an activated socket that is not a stream socket", "fd", 3+i)
			continue
		}
		out = append(out, apiListener{ln: ln, addr: listenAddr(ln.Addr())})
	}
	return out, nil
}

// openAPIListeners opens the API's sockets by the rule above. The first
// activated of them are the activated sockets.
func openAPIListeners(apiListen []string, explicit bool, perm socketPerm, log *slog.Logger) (lns []apiListener, activated int, err error) {
	lns, err = activatedListeners(log)
	if err != nil {
		return nil, 0, err
	}
	addrs := make([]string, len(lns))
	for i, l := range lns {
		addrs[i] = l.addr
	}
	activated = len(lns)
	for _, l := range toOpen(apiListen, explicit, addrs, canonListen) {
		ln, err := listenPerm(l, perm)
		if err != nil {
			for _, o := range lns {
				_ = o.ln.Close()
			}
			return nil, 0, err
		}
		lns = append(lns, apiListener{ln: ln, addr: l})
	}
	return lns, activated, nil
}

func listen(l string) (net.Listener, error) { return listenPerm(l, defaultSocketPerm) }

// listenPerm opens l; a unix socket gets perm's mode and group.
func listenPerm(l string, perm socketPerm) (net.Listener, error) {
	network, addr, err := ParseListen(l)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		return listenUnix(addr, perm)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", l, err)
	}
	return ln, nil
}

// serverLimits bound what one client can hold of an API server.
type serverLimits struct {
	readHeader time.Duration // to read a request's headers
	read       time.Duration // to read a whole request, body included
	write      time.Duration // to answer; journal streams move it along (api.StreamWriteTimeout)
	idle       time.Duration // a keep-alive connection between requests
	maxHeader  int           // bytes of request headers
}

// apiLimits are the limits of fleetd's API servers: a request body of
// api.MaxUnitBodyBytes must arrive within read.
var apiLimits = serverLimits{
	readHeader: 10 * time.Second,
	read:       time.Minute,
	write:      time.Minute,
	idle:       2 * time.Minute,
	maxHeader:  64 << 10,
}

// newAPIServer returns the server of one listener: h under lim, behind
// the Host check on a TCP listener, with the caller's identity attached
// to every request (see identity.go).
func newAPIServer(ln net.Listener, h http.Handler, lim serverLimits, hostname string, allowed []string) *http.Server {
	h = identify(h)
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		h = checkHost(ta, hostname, allowed, h)
	}
	return &http.Server{
		ConnContext:       connContext(ln.Addr().String()),
		Handler:           h,
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
		MaxHeaderBytes:    lim.maxHeader,
	}
}

// serveAPI serves h on lns until the returned servers are shut down.
// With tlsConf, every TCP listener serves TLS only.
func serveAPI(lns []apiListener, activatedCount int, h http.Handler, allowed []string, tlsConf *tls.Config, log *slog.Logger) []*http.Server {
	hostname, err := os.Hostname()
	if err != nil {
		log.Warn("the host name is unknown; TCP listeners accept IP addresses and localhost only", "err", err)
	}
	servers := make([]*http.Server, 0, len(lns))
	for i, l := range lns {
		srv := newAPIServer(l.ln, h, apiLimits, hostname, allowed)
		servers = append(servers, srv)
		ln := l.ln
		if _, isTCP := ln.Addr().(*net.TCPAddr); isTCP && tlsConf != nil {
			ln = tls.NewListener(ln, tlsConf)
		}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("API listener failed", "listen", l.addr, "err", err)
			}
		}()
		// The bound address: a tcp port 0 shows the port the kernel chose.
		log.Info("API listening", "listen", listenAddr(l.ln.Addr()), "activated", i < activatedCount)
	}
	return servers
}

// notifier tells the service manager about fleetd's state (sd_notify);
// it does nothing when fleetd was not started with NOTIFY_SOCKET.
type notifier struct {
	log *slog.Logger
}

func (n notifier) notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("notifying the service manager", "state", state, "err", err)
	}
}

// watchdogInterval is the service manager's watchdog timeout (WatchdogSec=),
// or 0 if none is set for this process.
func watchdogInterval() (time.Duration, error) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("read watchdog settings: %w", err)
	}
	return d, nil
}

// runWatchdog sends WATCHDOG=1 every interval/2 while healthy reports
// true, until ctx ends.
func runWatchdog(ctx context.Context, interval time.Duration, healthy func() bool, send func(state string)) {
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		if healthy() {
			send(daemon.SdNotifyWatchdog)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// apiAddrs are the addresses the API listens on.
func apiAddrs(lns []apiListener) []net.Addr {
	out := make([]net.Addr, len(lns))
	for i, l := range lns {
		out[i] = l.ln.Addr()
	}
	return out
}

// publishedAPIURL is the URL other machines forward requests for this one
// to: http://host:port of the first TCP address (its real port, so port 0
// works). An unspecified host (0.0.0.0, [::]) is replaced with publicIP,
// or with the loopback address when there is none. Without a TCP address
// there is no URL.
func publishedAPIURL(addrs []net.Addr, publicIP string) string {
	for _, a := range addrs {
		ta, ok := a.(*net.TCPAddr)
		if !ok {
			continue
		}
		host := ta.IP.String()
		if ta.IP == nil || ta.IP.IsUnspecified() {
			host = publicIP
			if host == "" {
				host = "127.0.0.1"
			}
		}
		return "http://" + net.JoinHostPort(host, strconv.Itoa(ta.Port))
	}
	return ""
}
