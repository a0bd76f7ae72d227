package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/client"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// A client of a development stack (`make run`): ingest on :8081, report on
// :8082, plaintext, an API key from the environment.
func ExampleNew() {
	ctx := context.Background()
	c, err := client.New(ctx, "localhost:8081",
		client.WithReportTarget("localhost:8082"),
		client.WithAPIKey(os.Getenv("EMAILSENDER_API_KEY")),
		client.WithInsecure(),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// In production: TLS (the default; WithTLS for a private CA), a token source
// for short-lived JWTs, a tighter retry policy and a default deadline.
func ExampleNew_production() {
	ctx := context.Background()
	tokens := client.TokenSourceFunc(func(ctx context.Context) (string, error) {
		return os.Getenv("EMAILSENDER_TOKEN"), nil // a real source caches and refreshes
	})
	retry := client.DefaultRetryPolicy()
	retry.MaxAttempts = 8
	retry.PerAttemptTimeout = 5 * time.Second
	c, err := client.New(ctx, "dns:///email.example.com:443",
		client.WithTokenSource(tokens),
		client.WithTLS(&tls.Config{MinVersion: tls.VersionTLS13}),
		client.WithDefaultTimeout(20*time.Second),
		client.WithRetry(retry),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// Send needs no idempotency key: the client sets one and reuses it when it
// retries, so a retry after a lost answer never sends twice. Set your own
// (from an order id, say) to make your process's own retries safe as well.
func ExampleClient_Send() {
	ctx := context.Background()
	c, err := client.New(ctx, "localhost:8081", client.WithAPIKey(os.Getenv("EMAILSENDER_API_KEY")), client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	resp, err := c.Send(ctx, &v1.SendEmailRequest{
		Message: &v1.EmailMessage{
			From:     &v1.Address{Address: "orders@shop.example", Name: "Shop"},
			To:       []*v1.Address{{Address: "jane@example.org"}},
			Subject:  "Your order",
			TextBody: "It ships today.",
			Tags:     map[string]string{"kind": "order"},
		},
		IdempotencyKey: "order-1234-shipped", // optional
	})
	switch status.Code(err) {
	case codes.OK:
		fmt.Println(resp.GetMessageId(), resp.GetStatus(), resp.GetIdempotentReplay())
	case codes.InvalidArgument:
		fmt.Println("bad request:", status.Convert(err).Message())
	default:
		log.Fatal(err)
	}
}

// SendAndWait returns once the message is SENT or has failed for good.
func ExampleClient_SendAndWait() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.New(ctx, "localhost:8081", client.WithReportTarget("localhost:8082"),
		client.WithAPIKey(os.Getenv("EMAILSENDER_API_KEY")), client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	report, _, err := c.SendAndWait(ctx, &v1.SendEmailRequest{Message: &v1.EmailMessage{
		From: &v1.Address{Address: "dev@example.com"}, To: []*v1.Address{{Address: "someone@example.com"}},
		Subject: "Hello", TextBody: "Hello from Email Sender",
	}})
	if errors.Is(err, context.DeadlineExceeded) {
		log.Fatal("not delivered within two minutes")
	} else if err != nil {
		log.Fatal(err)
	}
	st := report.GetMessage().GetStatus()
	fmt.Println(st, client.Succeeded(st))
	for _, e := range report.GetEvents() {
		fmt.Println(e.GetOccurredAt().AsTime().Format(time.RFC3339), e.GetType(), e.GetProviderResponse())
	}
}

// AllMessages pages through ListMessages.
func ExampleClient_AllMessages() {
	ctx := context.Background()
	c, err := client.New(ctx, "localhost:8081", client.WithReportTarget("localhost:8082"),
		client.WithAPIKey(os.Getenv("EMAILSENDER_API_KEY")), client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	failed := &v1.ListMessagesRequest{Statuses: []v1.MessageStatus_Value{v1.MessageStatus_FAILED, v1.MessageStatus_BOUNCED}}
	for m, err := range c.AllMessages(ctx, failed) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.GetMessageId(), m.GetStatus(), m.GetLastError())
	}
}

// Watch follows the account's events and survives broken connections: it
// reopens the stream from the last cursor, so nothing is missed or repeated.
// Store the cursor to resume after a restart of your own process.
func ExampleClient_Watch() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c, err := client.New(ctx, "localhost:8081", client.WithReportTarget("localhost:8082"),
		client.WithAPIKey(os.Getenv("EMAILSENDER_API_KEY")), client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	req := &v1.WatchEventsRequest{
		Cursor: os.Getenv("LAST_CURSOR"), // empty: from now on
		Types:  []string{"DELIVERED", "BOUNCED", "COMPLAINED"},
		Tags:   map[string]string{"campaign": "spring"},
	}
	for ev, err := range c.Watch(ctx, req, client.WatchOnReconnect(func(r client.Reconnect) {
		log.Printf("watch: %v; resuming in %s", r.Err, r.Delay)
	})) {
		switch {
		case errors.Is(err, context.Canceled):
			return // interrupted
		case status.Code(err) == codes.OutOfRange:
			log.Fatal("the cursor is older than the retained events: catch up with ListMessages")
		case err != nil:
			log.Fatal(err)
		}
		fmt.Println(ev.GetMessageId(), ev.GetEvent().GetType(), ev.GetEvent().GetRecipients())
		_ = ev.GetCursor() // store it to resume here
	}
}

// A webhook endpoint: its signing secret comes once, with the answer.
func ExampleClient_CreateWebhook() {
	ctx := context.Background()
	c, err := client.New(ctx, "localhost:8081", client.WithReportTarget("localhost:8082"),
		client.WithAPIKey(os.Getenv("EMAILSENDER_ADMIN_KEY")), client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	created, err := c.CreateWebhook(ctx, &v1.CreateWebhookRequest{
		Url: "https://hooks.example.com/email", EventTypes: []string{"delivered", "bounced"},
	})
	if err != nil {
		log.Fatal(err)
	}
	storeSecret(created.GetSecret()) // never shown again
	test, err := c.SendTestWebhook(ctx, created.GetWebhook().GetId())
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range test.GetDelivery().GetAttemptLog() {
		fmt.Println(a.GetStatusCode(), a.GetLatency().AsDuration(), a.GetError())
	}
}

func storeSecret(string) {}

// Which statuses end a message's delivery.
func ExampleTerminal() {
	for _, s := range []v1.MessageStatus_Value{v1.MessageStatus_QUEUED, v1.MessageStatus_RETRYING, v1.MessageStatus_SENT, v1.MessageStatus_BOUNCED} {
		fmt.Println(s, client.Terminal(s), client.Succeeded(s))
	}
	// Output:
	// QUEUED false false
	// RETRYING false false
	// SENT true true
	// BOUNCED true false
}
