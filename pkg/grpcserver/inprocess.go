package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/test/bufconn"
)

// inProcessBuffer is the size of each direction's buffer of an in-process
// connection.
const inProcessBuffer = 1 << 20

// inProcessListener hands out the server's end of in-process connections,
// marked so that the server's credentials know them: no connection from the
// network can be one.
type inProcessListener struct{ *bufconn.Listener }

func (l inProcessListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &inProcessConn{Conn: c}, nil
}

type inProcessConn struct{ net.Conn }

// InProcessAuthInfo is the AuthInfo of a call made over an in-process
// connection (DialInProcess): the process's own HTTP gateway.
type InProcessAuthInfo struct{ credentials.CommonAuthInfo }

// AuthType implements credentials.AuthInfo.
func (InProcessAuthInfo) AuthType() string { return "in-process" }

// InProcess reports whether the call of ctx came over an in-process
// connection (DialInProcess), i.e. from this process itself.
func InProcess(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	_, ok = p.AuthInfo.(InProcessAuthInfo)
	return ok
}

// serverCreds are the server's transport credentials: TLS (or plaintext when
// it has none) for connections from the network, nothing for in-process ones.
type serverCreds struct {
	network credentials.TransportCredentials
	tls     bool
}

func newServerCreds(cfg *tls.Config) serverCreds {
	if cfg == nil {
		return serverCreds{network: insecure.NewCredentials()}
	}
	return serverCreds{network: credentials.NewTLS(cfg), tls: true}
}

func (c serverCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if _, ok := conn.(*inProcessConn); ok {
		return conn, InProcessAuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	return c.network.ServerHandshake(conn)
}

func (c serverCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("grpcserver: server credentials cannot dial")
}

func (c serverCreds) Info() credentials.ProtocolInfo { return c.network.Info() }

func (c serverCreds) Clone() credentials.TransportCredentials {
	return serverCreds{network: c.network.Clone(), tls: c.tls}
}

// OverrideServerName is part of the (deprecated) interface; servers have no use for it.
func (c serverCreds) OverrideServerName(string) error { return nil }
