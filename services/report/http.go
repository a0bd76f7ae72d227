package report

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/namirasoft/email-sender/pkg/connect"
	"github.com/namirasoft/email-sender/pkg/httpgateway"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// httpMaxBodyBytes bounds an HTTP/JSON request body: ReportService calls are
// GETs with query parameters, SNS posts at most 256 KiB of message.
const httpMaxBodyBytes = 1 << 20

// httpEnabled reports whether Run serves the HTTP/JSON API: with
// Deps.HTTPListener, or on Config.HTTPAddr unless it is empty or "off".
func (c Config) httpEnabled(d Deps) bool {
	return d.HTTPListener != nil || (c.HTTPAddr != "" && c.HTTPAddr != "off")
}

// httpGateway builds the HTTP/JSON gateway of ReportService calling the gRPC
// server on grpcAddr, and its listener; nil when HTTP is off.
func (s *Service) httpGateway(grpcAddr net.Addr) (*httpgateway.Gateway, net.Listener, error) {
	if !s.cfg.httpEnabled(s.deps) {
		return nil, nil, nil
	}
	lis, err := connect.Listener(s.deps.HTTPListener, s.cfg.HTTPAddr)
	if err != nil {
		return nil, nil, err
	}
	// HTTPS when configured: the certificate is read once, at start (restart
	// to renew it).
	if s.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			_ = lis.Close()
			return nil, nil, fmt.Errorf("report: tls certificate: %w", err)
		}
		lis = tls.NewListener(lis, &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"http/1.1"},
		})
	}
	gw, err := httpgateway.New(httpgateway.Config{MaxBodyBytes: httpMaxBodyBytes, ShutdownGrace: s.cfg.ShutdownGrace},
		httpgateway.LoopbackTarget(grpcAddr), s.log, emailsenderv1.RegisterReportServiceHandler, s.feedback.register)
	if err != nil {
		_ = lis.Close()
		return nil, nil, err
	}
	return gw, lis, nil
}
