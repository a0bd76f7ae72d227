package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/grpcserver"
)

// TLSFiles are a server's certificate, key and, optionally, the CA its
// clients' certificates must be issued by.
type TLSFiles struct {
	// CertFile and KeyFile, both or neither, make gRPC and HTTP serve TLS.
	CertFile, KeyFile string
	// ClientCAFile, when set (with CertFile), makes every connection present
	// a client certificate issued by it (mutual TLS, for internal callers).
	ClientCAFile string
}

// serverTLS reads the files once, at start; nil when TLS is off.
func (f TLSFiles) serverTLS() (*tls.Config, error) {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, errors.New("tls: set both the certificate and the key file, or neither")
	}
	if f.CertFile == "" {
		if f.ClientCAFile != "" {
			return nil, errors.New("tls: a client CA needs the server's certificate and key")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.ClientCAFile != "" {
		pem, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls client CA %s: no PEM certificate in it", f.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// admission is what happens to a call before its request is read (a gRPC tap
// handle): calls without well-formed credentials, or with an API key the
// cache knows to be refused, are refused there; calls whose credentials are
// not yet verified (an uncached key, a token) share a bound on the request
// bytes they may have in flight, each counted at the largest request.
type admission struct {
	keys       *auth.KeyStore
	unverified *semaphore.Weighted
	refused    func(ctx context.Context, method string)
}

type admittedKey struct{}

func newAdmission(keys *auth.KeyStore, inflightBytes int64, maxRecv int, refused func(context.Context, string)) *admission {
	a := &admission{keys: keys, refused: refused}
	if inflightBytes > 0 {
		if maxRecv <= 0 {
			maxRecv = 4 << 20 // gRPC's own limit, which the server then keeps
		}
		a.unverified = semaphore.NewWeighted(max(1, inflightBytes/int64(maxRecv)))
	}
	return a
}

// tap is the grpc.InTapHandle. It must not block: it runs in the
// connection's reader.
func (a *admission) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if auth.IsPublic(info.FullMethodName) || grpcserver.InProcess(ctx) {
		// The gateway authenticated the request before reading its body.
		return ctx, nil
	}
	token, err := auth.Precheck(info.Header)
	if err != nil {
		a.refused(ctx, info.FullMethodName)
		return nil, err
	}
	if a.keys != nil && strings.HasPrefix(token, "es_") {
		switch a.keys.Cached(token) {
		case auth.CachedValid:
			return ctx, nil
		case auth.CachedRefused:
			a.refused(ctx, info.FullMethodName)
			return nil, status.Error(codes.Unauthenticated, "invalid, revoked or expired API key or token")
		}
	}
	if a.unverified == nil {
		return ctx, nil
	}
	if !a.unverified.TryAcquire(1) {
		return nil, status.Error(codes.ResourceExhausted, "too many calls with credentials not yet verified in flight; retry")
	}
	release := sync.OnceFunc(func() { a.unverified.Release(1) })
	context.AfterFunc(ctx, release) // a call that never reaches the interceptors
	return context.WithValue(ctx, admittedKey{}, release), nil
}

// readInterceptor, first in the chain, gives back the call's share of the
// bound once its request has been read (interceptors run after that).
func (a *admission) readInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if release, ok := ctx.Value(admittedKey{}).(func()); ok {
			release()
		}
		return handler(ctx, req)
	}
}

// httpPreAuth authenticates an HTTP request on its headers, before its body is
// read, as the gRPC server will: the peer is the HTTP client, and its
// X-Forwarded-For is believed only from TRUSTED_PROXIES.
func httpPreAuth(a auth.Authenticator) func(*http.Request) error {
	return func(r *http.Request) error {
		md := metadata.MD{"authorization": r.Header.Values("Authorization")}
		if _, err := auth.Precheck(md); err != nil {
			return err
		}
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			md["x-forwarded-for"] = xff
		}
		ctx := metadata.NewIncomingContext(r.Context(), md)
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			ctx = peer.NewContext(ctx, &peer.Peer{Addr: net.TCPAddrFromAddrPort(ap)})
		}
		_, err := auth.Identify(ctx, a)
		return err
	}
}
