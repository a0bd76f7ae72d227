package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/namirasoft/email-sender/pkg/infra"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/ingest/operator"
)

const operatorUsage = "ingest operator suspend|resume|terminate --account ID --reason TEXT\n" +
	"       ingest operator state --account ID\n" +
	"       ingest operator audit [--account ID] [--limit N]"

// operatorCmd runs the operator's controls directly on PostgreSQL and NATS,
// through the same functions as the OperatorService; the audited actor is
// "cli:" + $USER.
func operatorCmd(ctx context.Context, cfg ingest.Config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: " + operatorUsage)
	}
	action, args := args[0], args[1:]
	fs := flag.NewFlagSet("operator "+action, flag.ContinueOnError)
	account := fs.String("account", "", "account id")
	reason := fs.String("reason", "", "why (audited)")
	limit := fs.Int("limit", 100, "actions to list")
	if err := fs.Parse(args); err != nil {
		return err
	}
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	actor := "cli:" + user
	in, err := infra.Open(ctx, infra.Config{Service: "ingest-operator", Log: cfg.Log, Postgres: cfg.Postgres, NATS: cfg.NATS, Schema: infra.Migrate})
	if err != nil {
		return err
	}
	defer in.Close()
	c, err := ingest.Operator(cfg, ingest.Deps{Pool: in.Pool, JetStream: in.JetStream, Logger: in.Log})
	if err != nil {
		return err
	}
	switch action {
	case "suspend", "resume", "terminate":
		f := map[string]func(context.Context, string, string, string) (operator.Outcome, error){
			"suspend": c.Suspend, "resume": c.Resume, "terminate": c.Terminate,
		}[action]
		o, err := f(ctx, actor, *account, *reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "account %s: %s (audit %s)\n", *account, o.State.State, o.AuditID)
		return nil
	case "state":
		e, err := c.State(ctx, *account)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "account %s: %s", e.Account, e.State)
		if e.Reason != "" {
			fmt.Fprintf(stdout, " since %s by %s: %s", e.ChangedAt.Format("2006-01-02T15:04:05Z07:00"), e.Actor, e.Reason)
		}
		fmt.Fprintln(stdout)
		return nil
	case "audit":
		list, err := c.Audit(ctx, *account, *limit)
		if err != nil {
			return err
		}
		for _, a := range list {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%q\t%s\n", a.At.Format("2006-01-02T15:04:05Z07:00"), a.Actor, a.Action, a.Account, a.Reason, a.Detail)
		}
		return nil
	}
	return errors.New("usage: " + operatorUsage)
}
