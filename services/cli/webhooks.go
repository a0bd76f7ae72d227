package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// webhooks manages the account's webhook endpoints (WebhookService, on the
// report address; scope admin). Signing secrets are printed by create and
// rotate-secret only.
func (r *runner) webhooks(ctx context.Context, args []string) error {
	cmd, args, err := sub("webhooks", args, "list", "create", "update", "delete", "rotate-secret", "test", "deliveries", "replay")
	if err != nil {
		return err
	}
	fs := r.flagSet("webhooks " + cmd)
	var (
		url, description opt
		eventTypes       listFlag
		tags             kvFlag
		clearFilter      *bool
		enable, disable  *bool
		previousTTL      *time.Duration
		state, delivery  *string
		since, until     *string
		limit            *int
		want, names      = 1, "ID"
		filterFlags      bool
	)
	switch cmd {
	case "list":
		want, names = 0, ""
	case "create", "update":
		fs.Var(&url, "url", "endpoint URL (https; http only for hosts the operator allows)")
		fs.Var(&description, "description", "description")
		fs.Var(&eventTypes, "event-type", "deliver only these types: accepted, sent, delivered, bounced, complained, failed, suppressed, canceled, retrying, and the account-level reputation_warning, reputation_paused, reputation_recovered, reputation_resumed (repeatable or comma separated; default every message event type)")
		fs.Var(&tags, "tag", "deliver only events of messages with tag KEY=VALUE (repeatable; all must match; reputation_* events are not filtered by tags)")
		filterFlags = true
		if cmd == "create" {
			want, names = 0, ""
		} else {
			clearFilter = fs.Bool("clear-filter", false, "remove the event type and tag filters (deliver everything)")
			enable = fs.Bool("enable", false, "enable the endpoint (held deliveries go out)")
			disable = fs.Bool("disable", false, "disable the endpoint (deliveries are held)")
		}
	case "rotate-secret":
		previousTTL = fs.Duration("previous-ttl", 0, "how long the previous secret keeps signing too (default 24h, at most 168h)")
	case "deliveries":
		state = fs.String("state", "", "only deliveries in this state: pending, succeeded or failed")
		limit = fs.Int("limit", 50, "most deliveries to list (pages are fetched as needed)")
	case "replay":
		delivery = fs.String("delivery", "", "replay this delivery")
		since = fs.String("since", "", "replay the deliveries created at or after: RFC 3339 time or duration ago (24h)")
		until = fs.String("until", "", "... and before: RFC 3339 time or duration ago (default now)")
	}
	pos, err := r.parse(fs, args, want, names)
	if err != nil {
		return err
	}
	var id string
	if len(pos) == 1 {
		id = pos[0]
	}
	var filter *v1.WebhookFilter
	if filterFlags && (len(eventTypes) > 0 || len(tags.keys) > 0 || (clearFilter != nil && *clearFilter)) {
		if clearFilter != nil && *clearFilter && (len(eventTypes) > 0 || len(tags.keys) > 0) {
			return usageErrorf("webhooks update: --clear-filter excludes --event-type and --tag")
		}
		filter = &v1.WebhookFilter{EventTypes: eventTypes, Tags: tags.toMap(nil)}
	}
	var replay *v1.ReplayWebhookDeliveriesRequest
	switch cmd {
	case "create":
		if url.v == "" {
			return usageErrorf("webhooks create: --url is required")
		}
	case "update":
		if *enable && *disable {
			return usageErrorf("webhooks update: --enable and --disable exclude each other")
		}
		if !url.set && !description.set && filter == nil && !*enable && !*disable {
			return usageErrorf("webhooks update: nothing to change: give --url, --description, --event-type, --tag, --clear-filter, --enable or --disable")
		}
	case "deliveries":
		if *limit < 1 {
			return usageErrorf("--limit: want at least 1")
		}
	case "replay":
		replay = &v1.ReplayWebhookDeliveriesRequest{WebhookId: id, DeliveryId: *delivery}
		now := time.Now()
		if replay.Start, err = parseTime(*since, true, now); err != nil {
			return usageErrorf("--since %v", err)
		}
		if replay.End, err = parseTime(*until, true, now); err != nil {
			return usageErrorf("--until %v", err)
		}
		switch {
		case *delivery == "" && replay.Start == nil:
			return usageErrorf("webhooks replay: give --delivery ID or --since (and --until)")
		case *delivery != "" && (replay.Start != nil || replay.End != nil):
			return usageErrorf("webhooks replay: --delivery excludes --since and --until")
		case *delivery == "" && replay.End == nil:
			replay.End = timestamppb.New(now)
		}
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	switch cmd {
	case "list":
		resp, err := c.ListWebhooks(ctx)
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.printWebhooks(resp.GetWebhooks()...)
	case "create":
		resp, err := c.CreateWebhook(ctx, &v1.CreateWebhookRequest{Url: url.v, Description: description.v, EventTypes: eventTypes, Tags: tags.toMap(nil)})
		if err != nil {
			return err
		}
		return r.printSecret(resp, resp.GetWebhook(), resp.GetSecret())
	case "update":
		req := &v1.UpdateWebhookRequest{Id: id, Filter: filter}
		if url.set {
			req.Url = &url.v
		}
		if description.set {
			req.Description = &description.v
		}
		if *enable || *disable {
			req.Enabled = enable
		}
		resp, err := c.UpdateWebhook(ctx, req)
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.printWebhooks(resp.GetWebhook())
	case "delete":
		if err := c.DeleteWebhook(ctx, id); err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(&v1.DeleteWebhookResponse{})
		}
		_, err = fmt.Fprintf(r.out.w, "deleted webhook %s\n", id)
		return err
	case "rotate-secret":
		req := &v1.RotateWebhookSecretRequest{Id: id}
		if *previousTTL > 0 {
			req.PreviousSecretTtl = durationpb.New(*previousTTL)
		}
		resp, err := c.RotateWebhookSecret(ctx, req)
		if err != nil {
			return err
		}
		return r.printSecret(resp, resp.GetWebhook(), resp.GetSecret())
	case "test":
		resp, err := c.SendTestWebhook(ctx, id)
		if err != nil {
			return err
		}
		if r.out.json {
			err = r.out.message(resp)
		} else {
			err = r.printAttempts(resp.GetDelivery())
		}
		if err != nil {
			return err
		}
		if log := resp.GetDelivery().GetAttemptLog(); len(log) == 0 || !http2xx(log[len(log)-1].GetStatusCode()) {
			return &negativeError{msg: "webhook " + id + ": the test post got no 2xx answer"}
		}
		return nil
	case "deliveries":
		all := &v1.ListWebhookDeliveriesResponse{}
		req := &v1.ListWebhookDeliveriesRequest{WebhookId: id, State: *state}
		for len(all.Deliveries) < *limit {
			req.PageSize = int32(min(*limit-len(all.Deliveries), 200))
			page, err := c.ListWebhookDeliveries(ctx, req)
			if err != nil {
				return err
			}
			all.Deliveries = append(all.Deliveries, page.GetDeliveries()...)
			if all.NextPageToken = page.GetNextPageToken(); all.NextPageToken == "" {
				break
			}
			req.PageToken = all.NextPageToken
		}
		if r.out.json {
			return r.out.message(all)
		}
		return r.printDeliveries(all.GetDeliveries()...)
	default: // replay
		resp, err := c.ReplayWebhookDeliveries(ctx, replay)
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		_, err = fmt.Fprintf(r.out.w, "replayed %d deliveries\n", resp.GetReplayed())
		return err
	}
}

// printSecret prints a create or rotate answer: the endpoint, then its new
// secret, the one time it is shown.
func (r *runner) printSecret(resp proto.Message, w *v1.Webhook, secret string) error {
	fmt.Fprintln(r.env.Stderr, "The signing secret is shown only this once; store it now.")
	if r.out.json {
		return r.out.message(resp)
	}
	if err := r.printWebhooks(w); err != nil {
		return err
	}
	_, err := fmt.Fprintf(r.out.w, "\nsecret: %s\n", secret)
	return err
}

func (r *runner) printWebhooks(ws ...*v1.Webhook) error {
	var rows [][]string
	for _, w := range ws {
		state := "enabled"
		if !w.GetEnabled() {
			state = "disabled " + w.GetDisabledReason()
		} else if w.GetFailingSince() != nil {
			state = "failing since " + ts(w.GetFailingSince())
		}
		rows = append(rows, []string{w.GetId(), oneLine(w.GetUrl(), 50), oneLine(state, 40), orDash(strings.Join(w.GetEventTypes(), ",")),
			orDash(kvs(w.GetTags())), orDash(oneLine(w.GetDescription(), 30)), ts(w.GetCreatedAt())})
	}
	return r.out.table([]string{"ID", "URL", "STATE", "EVENTS", "TAGS", "DESCRIPTION", "CREATED"}, rows)
}

func (r *runner) printDeliveries(ds ...*v1.WebhookDelivery) error {
	var rows [][]string
	for _, d := range ds {
		rows = append(rows, []string{d.GetId(), d.GetEventType(), orDash(d.GetMessageId()), orDash(d.GetRecipient()), d.GetState(),
			strconv.Itoa(int(d.GetAttempts())), ts(d.GetCreatedAt()), orDash(lastAttempt(d)), orDash(ts(d.GetNextAttemptAt()))})
	}
	return r.out.table([]string{"ID", "EVENT", "MESSAGE", "RECIPIENT", "STATE", "ATTEMPTS", "CREATED", "LAST ANSWER", "NEXT ATTEMPT"}, rows)
}

// printAttempts prints one delivery with its attempt log.
func (r *runner) printAttempts(d *v1.WebhookDelivery) error {
	if err := r.printDeliveries(d); err != nil {
		return err
	}
	fmt.Fprintln(r.out.w)
	var rows [][]string
	for _, a := range d.GetAttemptLog() {
		rows = append(rows, []string{ts(a.GetAt()), orDash(statusCode(a.GetStatusCode())), a.GetLatency().AsDuration().Round(time.Millisecond).String(),
			orDash(oneLine(a.GetError()+" "+a.GetResponseSnippet(), 80))})
	}
	return r.out.table([]string{"AT", "STATUS", "LATENCY", "ANSWER"}, rows)
}

func lastAttempt(d *v1.WebhookDelivery) string {
	log := d.GetAttemptLog()
	if len(log) == 0 {
		return ""
	}
	a := log[len(log)-1]
	if a.GetStatusCode() == 0 {
		return oneLine(a.GetError(), 40)
	}
	return strconv.Itoa(int(a.GetStatusCode()))
}

func statusCode(c int32) string {
	if c == 0 {
		return ""
	}
	return strconv.Itoa(int(c))
}

func http2xx(c int32) bool { return c >= 200 && c < 300 }
