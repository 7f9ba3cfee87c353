package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unreachable reports whether err says that etcd could not be reached in
// time, which is all the client says when it cannot connect at all: its
// connection errors (a refused TLS handshake, say) stay inside its retries.
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if s, ok := status.FromError(e); ok && (s.Code() == codes.Unavailable || s.Code() == codes.DeadlineExceeded) {
			return true
		}
	}
	return false
}

// explain adds to err, when it says etcd could not be reached over TLS,
// why: the TLS handshake with every endpoint is tried again here, and the
// refusal named ("tls: failed to verify certificate: x509: certificate
// signed by unknown authority", "remote error: tls: unknown certificate
// authority"). err is returned as it is otherwise, or when an endpoint
// accepts this client.
func (r *Etcd) explain(ctx context.Context, err error) error {
	if r.tls == nil || !unreachable(err) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	var causes []error
	for _, ep := range r.endpoints {
		u, perr := url.Parse(ep)
		if perr != nil || u.Scheme != "https" {
			return err
		}
		cause := handshake(ctx, r.tls, u.Host)
		if cause == nil {
			return err // this one takes us: the cause is elsewhere
		}
		causes = append(causes, fmt.Errorf("%s: %w", ep, cause))
	}
	if len(causes) == 0 {
		return err
	}
	return fmt.Errorf("%w (etcd refuses this client's TLS: %w)", err, causes[0])
}

// handshake connects to addr with cfg, as the etcd client does, and says
// how it failed, if it did. With TLS 1.3 the server judges the client's
// certificate after the client's side of the handshake: its alert is
// what the first read returns, while a server that accepted the client
// sends nothing before the client speaks.
func handshake(ctx context.Context, cfg *tls.Config, addr string) error {
	c := cfg.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	c.NextProtos = []string{"h2"}
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: c}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil // not a TLS refusal
		}
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}
