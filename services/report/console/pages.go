package console

import (
	"context"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/auth"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report/chart"
	"github.com/namirasoft/email-sender/services/report/watch"
)

var funcs = template.FuncMap{
	"ts": func(t *timestamppb.Timestamp) string {
		if t == nil || !t.IsValid() || t.AsTime().IsZero() {
			return ""
		}
		return t.AsTime().UTC().Format("2006-01-02 15:04:05")
	},
	"iso": func(t *timestamppb.Timestamp) string {
		if t == nil {
			return ""
		}
		return t.AsTime().UTC().Format(time.RFC3339)
	},
	"statusClass": func(s emailsenderv1.MessageStatus_Value) string {
		return "st-" + strings.ToLower(s.String())
	},
	"status": func(s emailsenderv1.MessageStatus_Value) string { return strings.ToLower(s.String()) },
	"tags": func(m map[string]string) []string {
		out := make([]string, 0, len(m))
		for k, v := range m {
			out = append(out, k+"="+v)
		}
		sort.Strings(out)
		return out
	},
	"pct":  chart.Percent,
	"list": func(v ...string) []string { return v },
	"sub":  func(a int32, b int) int32 { return a - int32(b) },
	"has": func(scopes []string, s string) bool {
		return auth.Principal{Scopes: scopes}.Has(s)
	},
}

// statuses are the statuses the Activity filter offers.
var statuses = func() []string {
	var out []string
	for i := int32(1); ; i++ {
		name, ok := emailsenderv1.MessageStatus_Value_name[i]
		if !ok {
			return out
		}
		out = append(out, name)
	}
}()

// activityPageSize is how many messages a page of Activity shows.
const activityPageSize = 50

type activityData struct {
	Messages []*emailsenderv1.MessageSummary
	// The filters as given, to show them back and make the next page's link.
	Status, Provider, Tag, Recipient, After, Before string
	// Subject is the subject search (ListMessages' subject_contains).
	Subject  string
	Statuses []string
	Next     string
	// Partial: a subject search read its bound before the page was full;
	// Next goes on with older messages.
	Partial bool
	// Recipients are the first recipients of each message.
	Recipients map[string][]string
}

// activity lists the account's messages, newest first, with the API's
// filters (ListMessages) and its cursor.
func (c *Console) activity(w http.ResponseWriter, r *http.Request, sess *Session) {
	q := r.URL.Query()
	d := activityData{
		Status: q.Get("status"), Provider: strings.TrimSpace(q.Get("provider")), Tag: strings.TrimSpace(q.Get("tag")),
		Recipient: strings.TrimSpace(q.Get("recipient")), After: q.Get("after"), Before: q.Get("before"), Statuses: statuses,
		Subject: strings.TrimSpace(q.Get("subject")),
	}
	req := &emailsenderv1.ListMessagesRequest{ProviderId: d.Provider, Recipient: d.Recipient, SubjectContains: d.Subject,
		PageToken: q.Get("page"), PageSize: activityPageSize}
	if d.Status != "" {
		v, ok := emailsenderv1.MessageStatus_Value_value[d.Status]
		if !ok || v == 0 {
			c.fail(w, r, sess, http.StatusBadRequest, "Unknown status.")
			return
		}
		req.Statuses = []emailsenderv1.MessageStatus_Value{emailsenderv1.MessageStatus_Value(v)}
	}
	if d.Tag != "" {
		k, v, ok := strings.Cut(d.Tag, "=")
		if !ok || k == "" {
			c.fail(w, r, sess, http.StatusBadRequest, "A tag filter is key=value.")
			return
		}
		req.Tags = map[string]string{strings.TrimSpace(k): strings.TrimSpace(v)}
	}
	for _, f := range []struct {
		val string
		dst **timestamppb.Timestamp
	}{{d.After, &req.CreatedAfter}, {d.Before, &req.CreatedBefore}} {
		if f.val == "" {
			continue
		}
		t, err := parseTime(f.val)
		if err != nil {
			c.fail(w, r, sess, http.StatusBadRequest, "Times are YYYY-MM-DDTHH:MM (UTC).")
			return
		}
		*f.dst = timestamppb.New(t)
	}
	ctx, err := c.call(r.Context(), sess, emailsenderv1.ReportService_ListMessages_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "ListMessages", err)
		return
	}
	resp, err := c.deps.Report.ListMessages(ctx, req)
	if err != nil {
		c.failCall(w, r, sess, "ListMessages", err)
		return
	}
	d.Messages = resp.GetMessages()
	ids := make([]string, len(d.Messages))
	for i, m := range d.Messages {
		ids[i] = m.GetMessageId()
	}
	if d.Recipients, err = c.deps.Contents.Recipients(r.Context(), sess.AccountID, ids); err != nil {
		c.failCall(w, r, sess, "Recipients", err)
		return
	}
	if tok := resp.GetNextPageToken(); tok != "" {
		nq := url.Values{}
		for k, v := range q {
			if k != "page" {
				nq[k] = v
			}
		}
		nq.Set("page", tok)
		d.Next = Prefix + "?" + nq.Encode()
		d.Partial = d.Subject != "" && len(d.Messages) < activityPageSize
	}
	c.render(w, r, http.StatusOK, "activity", page{Title: "Activity", Session: sess, Data: d})
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	_, err := time.Parse(time.RFC3339, s)
	return time.Time{}, err
}

type messageData struct {
	Msg      *emailsenderv1.GetMessageResponse
	Content  *emailsenderv1.EmailMessage
	Retained bool
	BodyDoc  string
	HasHTML  bool
	TextBody string
	Headers  []*emailsenderv1.Header
	// CanCancel: scheduled, and the session may cancel it.
	CanCancel bool
}

// message shows one message: recipients, timeline, body and headers while
// retained.
func (c *Console) message(w http.ResponseWriter, r *http.Request, sess *Session) {
	id := r.PathValue("id")
	ctx, err := c.call(r.Context(), sess, emailsenderv1.ReportService_GetMessage_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "GetMessage", err)
		return
	}
	resp, err := c.deps.Report.GetMessage(ctx, &emailsenderv1.GetMessageRequest{MessageId: id})
	if err != nil {
		c.failCall(w, r, sess, "GetMessage", err)
		return
	}
	d := messageData{Msg: resp, CanCancel: resp.GetMessage().GetStatus() == emailsenderv1.MessageStatus_SCHEDULED &&
		c.canIngest(sess, emailsenderv1.SendService_CancelScheduled_FullMethodName)}
	content, ok, err := c.deps.Contents.Content(r.Context(), sess.AccountID, resp.GetMessage().GetMessageId())
	if err != nil {
		c.failCall(w, r, sess, "Content", err)
		return
	}
	if ok {
		d.Retained, d.Content = true, content
		d.TextBody = content.GetTextBody()
		d.Headers = content.GetHeaders()
		if h := content.GetHtmlBody(); h != "" {
			d.HasHTML = true
			// The body's own policy comes first in its document; the
			// iframe's sandbox forbids scripts and gives it no origin.
			d.BodyDoc = `<!doctype html><meta http-equiv="Content-Security-Policy" content="` + bodyCSP + `">` + h
		}
	}
	w.Header().Set("Content-Security-Policy", messageCSP)
	c.render(w, r, http.StatusOK, "message", page{Title: "Message " + resp.GetMessage().GetMessageId(), Session: sess, Data: d})
}

// events streams the account's events as Server-Sent Events, from
// WatchEvents (package watch writes them as the API's /v1/events:sse does).
func (c *Console) events(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.call(r.Context(), sess, emailsenderv1.ReportService_WatchEvents_FullMethodName)
	if err != nil {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	req := &emailsenderv1.WatchEventsRequest{Cursor: r.Header.Get("Last-Event-ID")}
	if id := r.URL.Query().Get("message_id"); id != "" {
		req.MessageIds = []string{id}
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // the stream outlives the server's write timeout
	var (
		mu      sync.Mutex
		started bool
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = c.deps.Report.WatchEvents(req, &eventStream{ctx: ctx, send: func(resp *emailsenderv1.WatchEventsResponse) error {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			started = true
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
		}
		if err := watch.WriteSSE(w, resp); err != nil {
			return err
		}
		return rc.Flush()
	}})
	mu.Lock()
	defer mu.Unlock()
	if err != nil && !started && r.Context().Err() == nil {
		c.failCall(w, r, sess, "WatchEvents", err)
	}
}

// eventStream is the server stream WatchEvents sends on.
type eventStream struct {
	grpc.ServerStream // only Context and Send are used
	ctx               context.Context
	send              func(*emailsenderv1.WatchEventsResponse) error
}

func (s *eventStream) Context() context.Context { return s.ctx }
func (s *eventStream) Send(m *emailsenderv1.WatchEventsResponse) error {
	return s.send(m)
}

type webhooksData struct {
	Webhooks  []*emailsenderv1.Webhook
	CanDelete bool
}

func (c *Console) webhooks(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.call(r.Context(), sess, emailsenderv1.WebhookService_ListWebhooks_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "ListWebhooks", err)
		return
	}
	resp, err := c.deps.Webhooks.ListWebhooks(ctx, &emailsenderv1.ListWebhooksRequest{})
	if err != nil {
		c.failCall(w, r, sess, "ListWebhooks", err)
		return
	}
	c.render(w, r, http.StatusOK, "webhooks", page{Title: "Webhooks", Session: sess, Data: webhooksData{
		Webhooks: resp.GetWebhooks(), CanDelete: c.can(sess, emailsenderv1.WebhookService_DeleteWebhook_FullMethodName),
	}})
}

func (c *Console) deleteWebhook(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.call(r.Context(), sess, emailsenderv1.WebhookService_DeleteWebhook_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "DeleteWebhook", err)
		return
	}
	if _, err := c.deps.Webhooks.DeleteWebhook(ctx, &emailsenderv1.DeleteWebhookRequest{Id: r.PathValue("id")}); err != nil {
		c.failCall(w, r, sess, "DeleteWebhook", err)
		return
	}
	http.Redirect(w, r, "/console/webhooks", http.StatusSeeOther)
}

type deliveriesData struct {
	WebhookID  string
	State      string
	Deliveries []*emailsenderv1.WebhookDelivery
	Next       string
	CanReplay  bool
}

// deliveries is an endpoint's delivery log, newest first, with each
// attempt's answer.
func (c *Console) deliveries(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.call(r.Context(), sess, emailsenderv1.WebhookService_ListWebhookDeliveries_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "ListWebhookDeliveries", err)
		return
	}
	q := r.URL.Query()
	d := deliveriesData{WebhookID: r.PathValue("id"), State: q.Get("state"),
		CanReplay: c.can(sess, emailsenderv1.WebhookService_ReplayWebhookDeliveries_FullMethodName)}
	resp, err := c.deps.Webhooks.ListWebhookDeliveries(ctx, &emailsenderv1.ListWebhookDeliveriesRequest{
		WebhookId: d.WebhookID, State: d.State, PageSize: 50, PageToken: q.Get("page"),
	})
	if err != nil {
		c.failCall(w, r, sess, "ListWebhookDeliveries", err)
		return
	}
	d.Deliveries = resp.GetDeliveries()
	if tok := resp.GetNextPageToken(); tok != "" {
		d.Next = "/console/webhooks/" + url.PathEscape(d.WebhookID) + "/deliveries?" + url.Values{"state": {d.State}, "page": {tok}}.Encode()
	}
	c.render(w, r, http.StatusOK, "deliveries", page{Title: "Webhook deliveries", Session: sess, Data: d})
}

// replayDelivery queues one delivery again.
func (c *Console) replayDelivery(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.call(r.Context(), sess, emailsenderv1.WebhookService_ReplayWebhookDeliveries_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "ReplayWebhookDeliveries", err)
		return
	}
	id := r.PathValue("id")
	if _, err := c.deps.Webhooks.ReplayWebhookDeliveries(ctx, &emailsenderv1.ReplayWebhookDeliveriesRequest{
		WebhookId: id, DeliveryId: r.PathValue("delivery"),
	}); err != nil {
		c.failCall(w, r, sess, "ReplayWebhookDeliveries", err)
		return
	}
	http.Redirect(w, r, "/console/webhooks/"+url.PathEscape(id)+"/deliveries", http.StatusSeeOther)
}
