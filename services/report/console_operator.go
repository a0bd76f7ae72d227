package report

import (
	"context"
	"crypto/tls"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	operatorv1 "github.com/namirasoft/email-sender/proto/emailsender/operator/v1"
	"github.com/namirasoft/email-sender/services/report/console"
)

// consoleOperator is ingest's OperatorService for the console's operator
// view: every call carries the signed-in operator's own token (the context's
// console credential), so ingest authenticates and audits the operator, not
// the console.
type consoleOperator struct {
	conn *grpc.ClientConn
	c    operatorv1.OperatorServiceClient
}

// operatorBearer sends the context's console credential as the bearer.
type operatorBearer struct{ secure bool }

func (b operatorBearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := console.CredentialFrom(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (b operatorBearer) RequireTransportSecurity() bool { return b.secure }

func newConsoleOperator(cfg console.Config) (*consoleOperator, error) {
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	if cfg.IngestPlaintext {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(cfg.OperatorAddr, grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(operatorBearer{secure: !cfg.IngestPlaintext}), grpc.WithUserAgent("email-sender-console"))
	if err != nil {
		return nil, fmt.Errorf("console: operator client: %w", err)
	}
	return &consoleOperator{conn: conn, c: operatorv1.NewOperatorServiceClient(conn)}, nil
}

func (o *consoleOperator) SuspendAccount(ctx context.Context, account, reason string) error {
	_, err := o.c.SuspendAccount(ctx, &operatorv1.SuspendAccountRequest{AccountId: account, Reason: reason})
	return err
}

func (o *consoleOperator) ResumeAccount(ctx context.Context, account, reason string) error {
	_, err := o.c.ResumeAccount(ctx, &operatorv1.ResumeAccountRequest{AccountId: account, Reason: reason})
	return err
}

func (o *consoleOperator) Close() error { return o.conn.Close() }
