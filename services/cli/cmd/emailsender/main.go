// Command emailsender is the command line client of Namirasoft Email Sender:
// send messages (from flags, a JSON request or an .eml file), follow their
// status, list and count them, watch the account's events as they happen, and
// manage API keys, providers, senders, suppressions and webhooks.
// `emailsender help` lists the commands, the configuration and
// the exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/namirasoft/email-sender/services/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Getenv: os.Getenv, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
