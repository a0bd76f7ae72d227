package ingest

import (
	"net"

	"github.com/namirasoft/email-sender/pkg/connect"
	"github.com/namirasoft/email-sender/pkg/httpgateway"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// httpEnabled reports whether Run serves the HTTP/JSON API: with
// Deps.HTTPListener, or on Config.HTTPAddr unless it is empty or "off".
func (c Config) httpEnabled(d Deps) bool {
	return d.HTTPListener != nil || (c.HTTPAddr != "" && c.HTTPAddr != "off")
}

// HTTPMaxBodyBytes is the largest HTTP/JSON request body: the gRPC request
// limit with room for base64 (bytes fields such as attachment content are
// base64 in JSON, 4 bytes for 3) and JSON's field names. A request gRPC
// accepts is accepted over HTTP too; over it the answer is 413.
func (c Config) HTTPMaxBodyBytes() int64 {
	return int64(c.GRPCMaxRecvBytes)/3*4 + envelopeHeadroom
}

// httpGateway builds the HTTP/JSON gateway of SendService and AccountService
// calling the gRPC server on grpcAddr, and its listener; nil when HTTP is off.
func (s *Service) httpGateway(grpcAddr net.Addr) (*httpgateway.Gateway, net.Listener, error) {
	if !s.cfg.httpEnabled(s.deps) {
		return nil, nil, nil
	}
	lis, err := connect.Listener(s.deps.HTTPListener, s.cfg.HTTPAddr)
	if err != nil {
		return nil, nil, err
	}
	gw, err := httpgateway.New(httpgateway.Config{
		MaxBodyBytes:     s.cfg.HTTPMaxBodyBytes(),
		MaxResponseBytes: s.cfg.GRPCMaxRecvBytes,
		ShutdownGrace:    s.cfg.ShutdownGrace,
	}, httpgateway.LoopbackTarget(grpcAddr), s.log,
		emailsenderv1.RegisterSendServiceHandler, emailsenderv1.RegisterAccountServiceHandler)
	if err != nil {
		_ = lis.Close()
		return nil, nil, err
	}
	return gw, lis, nil
}
