package fleetd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/fleet-next/fleet/access"
)

// Who calls the API. A unix socket caller is who the kernel says it is
// (SO_PEERCRED), read once per connection in ConnContext; a TLS caller is
// named by its verified client certificate, read per request; a plain TCP
// caller is anonymous. Nothing the client sends (headers, body) changes
// its identity.

// peerIdentity returns the identity of the process at the other end of a
// unix connection, or false for any other connection.
func peerIdentity(c net.Conn, socket string) (access.Identity, bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return access.Identity{}, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return access.AnonymousIdentity("unix:" + socket), true
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return access.AnonymousIdentity("unix:" + socket), true
	}
	id := unixIdentity(cred.Uid, cred.Gid, lookupUser)
	// fleetd's own user holds the store's credentials already (they are
	// in its data directory): it is admin like root, so that a user's
	// own fleetd --dev needs no grant.
	id.Root = id.Root || int(cred.Uid) == os.Geteuid()
	id.From = fmt.Sprintf("unix:%s pid %d uid %d", socket, cred.Pid, cred.Uid)
	return id, true
}

// userInfo is what the user database says of a uid.
type userInfo struct {
	name   string              // "" if the uid has no entry
	groups []uint32            // its primary and supplementary groups
	group  func(uint32) string // a gid's name, "" if none
}

func lookupUser(uid uint32) userInfo {
	info := userInfo{group: func(gid uint32) string {
		g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10))
		if err != nil {
			return ""
		}
		return g.Name
	}}
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return info
	}
	info.name = u.Username
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if n, err := strconv.ParseUint(s, 10, 32); err == nil {
				info.groups = append(info.groups, uint32(n))
			}
		}
	}
	return info
}

// unixIdentity builds the subjects of uid with primary group gid:
// user:NAME, uid:N, then group:NAME of gid and of the user's groups in the
// user database. uid 0 is root.
func unixIdentity(uid, gid uint32, lookup func(uint32) userInfo) access.Identity {
	info := lookup(uid)
	var subjects []string
	if info.name != "" {
		subjects = append(subjects, "user:"+info.name)
	}
	subjects = append(subjects, "uid:"+strconv.FormatUint(uint64(uid), 10))
	for _, g := range append([]uint32{gid}, info.groups...) {
		name := ""
		if info.group != nil {
			name = info.group(g)
		}
		if name == "" {
			continue
		}
		if s := "group:" + name; !slices.Contains(subjects, s) {
			subjects = append(subjects, s)
		}
	}
	return access.Identity{Subjects: subjects, Root: uid == 0}
}

// certIdentity names the caller by its verified client certificate:
// cn:NAME, then o:NAME for each organization. A connection without a
// verified certificate is anonymous.
func certIdentity(cs *tls.ConnectionState) access.Identity {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return access.Identity{Subjects: []string{access.Anonymous}}
	}
	leaf := cs.VerifiedChains[0][0]
	var subjects []string
	if leaf.Subject.CommonName != "" {
		subjects = append(subjects, "cn:"+leaf.Subject.CommonName)
	}
	for _, o := range leaf.Subject.Organization {
		subjects = append(subjects, "o:"+o)
	}
	if len(subjects) == 0 {
		subjects = []string{access.Anonymous}
	}
	return access.Identity{Subjects: subjects}
}

type connIdentityKey struct{}

// connContext attaches the identity of a unix socket caller to every
// request of its connection.
func connContext(socket string) func(ctx context.Context, c net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		if id, ok := peerIdentity(c, socket); ok {
			return context.WithValue(ctx, connIdentityKey{}, id)
		}
		return ctx
	}
}

// identify attaches the caller's identity to each request: the unix
// peer's, else the TLS client certificate's, else anonymous.
func identify(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := r.Context().Value(connIdentityKey{}).(access.Identity)
		switch {
		case ok:
		case r.TLS != nil:
			id = certIdentity(r.TLS)
			id.From = "tls:" + r.RemoteAddr
		default:
			id = access.AnonymousIdentity("tcp:" + r.RemoteAddr)
		}
		h.ServeHTTP(w, r.WithContext(access.WithIdentity(r.Context(), id)))
	})
}

// apiTLSConfig is the TLS configuration of the TCP listeners, or nil when
// api_tls_cert_file is not set. With api_tls_client_ca_file, a client
// certificate is verified against it during the handshake (one from
// another CA ends the handshake); a client without one is anonymous.
func apiTLSConfig(cfg Config) (*tls.Config, error) {
	if cfg.APITLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.APITLSCertFile, cfg.APITLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("api_tls_cert_file/api_tls_key_file: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.APITLSClientCAFile != "" {
		pem, err := os.ReadFile(cfg.APITLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("api_tls_client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("api_tls_client_ca_file: no PEM certificate in " + cfg.APITLSClientCAFile)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return conf, nil
}
