package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/namirasoft/email-sender/pkg/client"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// watch prints the account's events as they come, one line each, until
// interrupted (exit 0), --limit events, or an error. Broken streams are
// resumed from the last cursor (the client's Watch); on the way out the
// cursor to resume from goes to standard error.
func (r *runner) watch(ctx context.Context, args []string) error {
	fs := r.flagSet("watch")
	var ids, types listFlag
	var tags kvFlag
	fs.Var(&ids, "message", "only this message's events (repeatable or comma separated; at most 100)")
	fs.Var(&types, "type", "only events of this type, e.g. SENT, DELIVERED, BOUNCED, WEBHOOK_DISABLED (repeatable or comma separated)")
	fs.Var(&tags, "tag", "only events of messages with tag KEY=VALUE (repeatable; all must match)")
	cursor := fs.String("cursor", "", "resume after this cursor (printed when a watch ends, and in every -o json line)")
	fromStart := fs.Bool("from-start", false, "without --cursor: start with the oldest retained event instead of now")
	limit := fs.Int("limit", 0, "exit after this many events (0: until interrupted)")
	giveUp := fs.Duration("give-up", 0, "exit (code 5) when the stream cannot be reopened for this long (0: keep trying)")
	if _, err := r.parse(fs, args, 0, ""); err != nil {
		return err
	}
	if *limit < 0 || *giveUp < 0 {
		return usageErrorf("watch: --limit and --give-up must not be negative")
	}
	if *cursor != "" && *fromStart {
		return usageErrorf("watch: --cursor and --from-start exclude each other")
	}
	req := &v1.WatchEventsRequest{Cursor: *cursor, MessageIds: ids, Types: types, Tags: tags.toMap(nil), FromStart: *fromStart}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	last := *cursor
	defer func() {
		if last != "" {
			fmt.Fprintf(r.env.Stderr, "emailsender: watch: resume with --cursor %s\n", last)
		}
	}()
	onReconnect := client.WatchOnReconnect(func(rc client.Reconnect) {
		fmt.Fprintf(r.env.Stderr, "emailsender: watch: %v; reconnecting in %s\n", rc.Err, rc.Delay.Round(1e6))
	})
	if !r.out.json {
		fmt.Fprintf(r.out.w, watchRow, "TIME", "EVENT", "STATUS", "MESSAGE", "RECIPIENTS", "DETAIL")
	}
	n := 0
	for resp, err := range c.Watch(ctx, req, client.WatchHeartbeats(), client.WatchGiveUpAfter(*giveUp), onReconnect) {
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil // interrupted
			}
			return err
		}
		last = resp.GetCursor()
		if resp.GetEvent() == nil {
			continue // a heartbeat: only the cursor moves
		}
		if err := r.printWatch(resp); err != nil {
			return err
		}
		if n++; *limit > 0 && n >= *limit {
			return nil
		}
	}
	return nil
}

const watchRow = "%-20s  %-19s  %-10s  %-36s  %-24s  %s\n"

func (r *runner) printWatch(resp *v1.WatchEventsResponse) error {
	if r.out.json {
		b, err := protojson.Marshal(resp)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		_, err = fmt.Fprintf(r.out.w, "%s\n", b)
		return err
	}
	e := resp.GetEvent()
	subject := resp.GetMessageId()
	switch {
	case resp.GetWebhookId() != "":
		subject = "webhook " + resp.GetWebhookId()
	case resp.GetProviderId() != "":
		subject = "provider " + resp.GetProviderId()
	}
	rcpts := "all"
	if len(e.GetRecipients()) > 0 {
		rcpts = strings.Join(e.GetRecipients(), ",")
	}
	detail := strings.TrimSpace(e.GetDetail() + " " + e.GetProviderResponse())
	if e.GetErrorClass() != "" {
		detail = "[" + e.GetErrorClass() + "] " + detail
	}
	if e.GetAttempt() > 0 {
		detail = "attempt " + strconv.Itoa(int(e.GetAttempt())) + " " + detail
	}
	if e.GetRetryAt() != nil {
		detail += " retry at " + ts(e.GetRetryAt())
	}
	_, err := fmt.Fprintf(r.out.w, watchRow, ts(e.GetOccurredAt()), e.GetType(), e.GetStatus().String(), subject,
		oneLine(rcpts, 24), oneLine(detail, 100))
	return err
}
