package e2e

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
	"github.com/namirasoft/email-sender/services/report/webhook"
)

// fakeClock is the webhook dispatcher's injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// received is one POST a receiver got.
type received struct {
	ID, Timestamp, Signature string
	Body                     []byte
	Type                     string
}

// receiver is a webhook endpoint whose answer the test sets: ok (204), fail
// (500), timeout (answers after the dispatcher gave up), gone (410).
type receiver struct {
	mu   sync.Mutex
	mode string
	got  []received
	srv  *httptest.Server
}

func newReceiver(t *testing.T, mode string) *receiver {
	r := &receiver{mode: mode}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var p struct{ Type string }
		_ = json.Unmarshal(body, &p)
		r.mu.Lock()
		r.got = append(r.got, received{ID: req.Header.Get("webhook-id"), Timestamp: req.Header.Get("webhook-timestamp"),
			Signature: req.Header.Get("webhook-signature"), Body: body, Type: p.Type})
		mode := r.mode
		r.mu.Unlock()
		switch mode {
		case "ok":
			w.WriteHeader(http.StatusNoContent)
		case "gone":
			w.WriteHeader(http.StatusGone)
		case "timeout":
			time.Sleep(time.Second)
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "down for maintenance")
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) set(mode string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = mode
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (r *receiver) waitCount(t *testing.T, n int) []received {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.requests()) >= n }, 20*time.Second, 10*time.Millisecond, "receiver: want %d requests", n)
	return r.requests()
}

// verifyPython checks every request's signature against secrets with an
// independent implementation (Python's hmac, hashlib and base64; the
// Standard Webhooks scheme: HMAC-SHA256 of "id.timestamp.body", base64, "v1,"
// prefixed, space separated) and validates the body against the published
// JSON Schema (a small validator in the script: the jsonschema module is not
// installed; it knows what the schema uses, oneOf and $ref included). It returns the script's error.
func verifyPython(t *testing.T, reqs []received, secret string) error {
	t.Helper()
	dir := t.TempDir()
	type rec struct{ ID, TS, Sig, Body, Secret string }
	var recs []rec
	for _, r := range reqs {
		recs = append(recs, rec{r.ID, r.Timestamp, r.Signature, base64.StdEncoding.EncodeToString(r.Body), secret})
	}
	data, err := json.Marshal(recs)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "reqs.json"), data, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "schema.json"), webhook.SchemaJSON, 0o600))
	script := `
import base64, hashlib, hmac, json, sys

# A small validator for what the schema uses (jsonschema is not installed):
# type, required, properties, additionalProperties, const, enum, minimum,
# oneOf and $ref (into the document's $defs).
TYPES = {"object": dict, "string": str, "integer": int, "number": (int, float)}
class Invalid(Exception):
    pass
def validate(v, s, root, path="$"):
    if "$ref" in s:
        return validate(v, root["$defs"][s["$ref"].split("/")[-1]], root, path)
    if "oneOf" in s:
        errs = []
        for alt in s["oneOf"]:
            try:
                validate(v, alt, root, path)
            except Invalid as e:
                errs.append(str(e))
        if len(errs) != len(s["oneOf"]) - 1:
            raise Invalid("%s: matches %d of oneOf (%s)" % (path, len(s["oneOf"]) - len(errs), "; ".join(errs)))
        return
    if "const" in s and v != s["const"]:
        raise Invalid("%s: want %r" % (path, s["const"]))
    if "enum" in s and v not in s["enum"]:
        raise Invalid("%s: %r not in enum" % (path, v))
    t = s.get("type")
    if t and not (isinstance(v, TYPES[t]) and not isinstance(v, bool)):
        raise Invalid("%s: want %s" % (path, t))
    if "minimum" in s and v < s["minimum"]:
        raise Invalid("%s: below %r" % (path, s["minimum"]))
    if t == "object":
        for k in s.get("required", []):
            if k not in v:
                raise Invalid("%s: %s missing" % (path, k))
        props = s.get("properties", {})
        for k, x in v.items():
            if k in props:
                validate(x, props[k], root, path + "." + k)
            elif s.get("additionalProperties") is False:
                raise Invalid("%s: unexpected %s" % (path, k))
            elif isinstance(s.get("additionalProperties"), dict):
                validate(x, s["additionalProperties"], root, path + "." + k)
reqs = json.load(open(sys.argv[1]))
schema = json.load(open(sys.argv[2]))
for r in reqs:
    key = base64.b64decode(r["Secret"][len("whsec_"):])
    body = base64.b64decode(r["Body"])
    signed = r["ID"].encode() + b"." + r["TS"].encode() + b"." + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    sigs = [s[3:] for s in r["Sig"].split(" ") if s.startswith("v1,")]
    if not any(hmac.compare_digest(want, s) for s in sigs):
        sys.exit("bad signature on " + r["ID"])
    try:
        validate(json.loads(body), schema, schema)
    except Invalid as e:
        sys.exit("%s: %s" % (r["ID"], e))
print("verified", len(reqs))
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "verify.py"), []byte(script), 0o600))
	out, err := exec.Command("/usr/bin/python3", filepath.Join(dir, "verify.py"), filepath.Join(dir, "reqs.json"), filepath.Join(dir, "schema.json")).CombinedOutput()
	t.Logf("python: %s", strings.TrimSpace(string(out)))
	return err
}

// TestWebhookReceiverFailsTimesOutGoneAndRecovers: a receiver that fails
// (500), times out, answers 410 and then recovers, under an injected clock.
// The first attempt is immediate; every later one is due after the Standard
// Webhooks schedule's wait (±10% jitter); a message's second event waits for
// its first; 410 disables the endpoint at once (reason on the endpoint and a
// WEBHOOK_DISABLED event); nothing goes out while it is disabled; enabling it
// delivers everything, in order. A second endpoint that fails continuously
// for longer than REPORT_WEBHOOK_DISABLE_AFTER is disabled. Every request's
// signature is checked by Python, also across a secret rotation (both
// secrets valid), and a tampered body is refused by the same check.
func TestWebhookReceiverFailsTimesOutGoneAndRecovers(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Now()}
	s := newStack(t, stackOptions{report: func(c *report.Config, d *report.Deps) {
		c.Webhooks.Timeout = 300 * time.Millisecond
		c.Webhooks.Lease = 5 * time.Second
		c.Webhooks.DisableAfter = time.Hour
		d.Webhooks.Now = clk.Now
	}})
	ctx := s.ctx("a")
	rcv := newReceiver(t, "fail")
	broken := newReceiver(t, "fail")
	created, err := s.webhooks.CreateWebhook(ctx, &v1.CreateWebhookRequest{Url: rcv.srv.URL + "/hook", Description: "main"})
	require.NoError(t, err)
	secret, id := created.GetSecret(), created.GetWebhook().GetId()
	require.True(t, strings.HasPrefix(secret, "whsec_"))
	created2, err := s.webhooks.CreateWebhook(ctx, &v1.CreateWebhookRequest{Url: broken.srv.URL + "/hook", EventTypes: []string{"accepted"}})
	require.NoError(t, err)
	id2 := created2.GetWebhook().GetId()
	list, err := s.webhooks.ListWebhooks(ctx, &v1.ListWebhooksRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetWebhooks(), 2)
	require.NotContains(t, answerText(list, nil), strings.TrimPrefix(secret, "whsec_"), "secrets are shown once")

	msgID := s.sendOK("a", simple("hooked@example.org"))
	s.waitStatus("a", msgID, v1.MessageStatus_SENT)

	// Attempt 1, immediate: 500. The SENT event waits behind ACCEPTED.
	got := rcv.waitCount(t, 1)
	require.Equal(t, "message.accepted", got[0].Type)
	broken.waitCount(t, 1)

	deliveries := func(webhookID string) map[string]*v1.WebhookDelivery {
		resp, err := s.webhooks.ListWebhookDeliveries(ctx, &v1.ListWebhookDeliveriesRequest{WebhookId: webhookID})
		require.NoError(t, err)
		out := map[string]*v1.WebhookDelivery{}
		for _, d := range resp.GetDeliveries() {
			out[d.GetEventType()] = d
		}
		return out
	}
	// waitAttempts waits until the accepted delivery has n attempts recorded
	// and checks the wait before the next one against the schedule.
	waitAttempts := func(n int) *v1.WebhookDelivery {
		var d *v1.WebhookDelivery
		require.Eventually(t, func() bool {
			d = deliveries(id)["message.accepted"]
			return d != nil && len(d.GetAttemptLog()) >= n
		}, 20*time.Second, 20*time.Millisecond)
		return d
	}
	checkNext := func(d *v1.WebhookDelivery, wait time.Duration) {
		t.Helper()
		require.Equal(t, "pending", d.GetState())
		last := d.GetAttemptLog()[len(d.GetAttemptLog())-1].GetAt().AsTime()
		got := d.GetNextAttemptAt().AsTime().Sub(last)
		require.InDelta(t, float64(wait), float64(got), 0.1*float64(wait)+float64(time.Millisecond), "wait after attempt %d: %s, schedule %s: %v", len(d.GetAttemptLog()), got, wait, d)
	}
	d := waitAttempts(1)
	require.EqualValues(t, 500, d.GetAttemptLog()[0].GetStatusCode())
	require.Equal(t, "down for maintenance", d.GetAttemptLog()[0].GetResponseSnippet())
	checkNext(d, webhook.Schedule[0])
	require.Equal(t, "pending", deliveries(id)["message.sent"].GetState())
	require.Len(t, rcv.requests(), 1, "SENT is not posted before ACCEPTED is done")

	// Nothing happens before the wait is over.
	clk.Advance(webhook.Schedule[0] / 2)
	time.Sleep(200 * time.Millisecond)
	require.Len(t, rcv.requests(), 1)

	// Attempt 2 times out; attempt 3 fails; attempt 4 is answered 410.
	for i, mode := range []string{"timeout", "fail", "gone"} {
		rcv.set(mode)
		clk.Advance(webhook.Schedule[i] + webhook.Schedule[i]/5)
		d = waitAttempts(i + 2)
		a := d.GetAttemptLog()[i+1]
		switch mode {
		case "timeout":
			require.Zero(t, a.GetStatusCode())
			require.Equal(t, "timeout", a.GetError())
			checkNext(d, webhook.Schedule[i+1])
		case "fail":
			require.EqualValues(t, 500, a.GetStatusCode())
			checkNext(d, webhook.Schedule[i+1])
		case "gone":
			require.EqualValues(t, 410, a.GetStatusCode())
		}
	}
	var ep *v1.Webhook
	require.Eventually(t, func() bool {
		l, err := s.webhooks.ListWebhooks(ctx, &v1.ListWebhooksRequest{})
		require.NoError(t, err)
		for _, w := range l.GetWebhooks() {
			if w.GetId() == id {
				ep = w
			}
		}
		return !ep.GetEnabled()
	}, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, ep.GetDisabledReason(), "410")

	// The owner sees why, as an event.
	disabled := watchAll(s, &v1.WatchEventsRequest{FromStart: true, Types: []string{"WEBHOOK_DISABLED"}})
	resp, err := disabled(ctx)
	require.NoError(t, err)
	require.Contains(t, answerText(resp, nil), id)
	require.Contains(t, answerText(resp, nil), "410 Gone")

	// Disabled: nothing goes out, however long.
	n := len(rcv.requests())
	clk.Advance(10 * time.Hour)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, rcv.requests(), n)

	// The second endpoint has failed since the start, for over an hour now.
	require.Eventually(t, func() bool {
		l, err := s.webhooks.ListWebhooks(ctx, &v1.ListWebhooksRequest{})
		require.NoError(t, err)
		for _, w := range l.GetWebhooks() {
			if w.GetId() == id2 {
				ep = w
			}
		}
		return !ep.GetEnabled()
	}, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, ep.GetDisabledReason(), "failed continuously since")

	// Recovered and enabled again: both events, in order, nothing lost.
	rcv.set("ok")
	up, err := s.webhooks.UpdateWebhook(ctx, &v1.UpdateWebhookRequest{Id: id, Enabled: proto.Bool(true)})
	require.NoError(t, err)
	require.True(t, up.GetWebhook().GetEnabled())
	require.Empty(t, up.GetWebhook().GetDisabledReason())
	got = rcv.waitCount(t, n+2)
	require.Equal(t, "message.accepted", got[n].Type)
	require.Equal(t, "message.sent", got[n+1].Type)
	require.Eventually(t, func() bool {
		ds := deliveries(id)
		return ds["message.accepted"].GetState() == "succeeded" && ds["message.sent"].GetState() == "succeeded"
	}, 10*time.Second, 20*time.Millisecond)
	// Every attempt of one delivery carries the same webhook-id.
	for _, r := range got[:n+1] {
		require.Equal(t, got[0].ID, r.ID)
	}

	// Payload: one recipient, the message's id.
	var p webhook.Payload
	require.NoError(t, json.Unmarshal(got[n+1].Body, &p))
	require.Equal(t, msgID, p.Data.MessageID)
	require.Equal(t, "hooked@example.org", p.Data.Recipient)
	require.Equal(t, "SENT", p.Data.Status)

	require.NoError(t, verifyPython(t, got, secret), "signatures by the secret")

	// Rotation: the test event is signed with both secrets.
	rot, err := s.webhooks.RotateWebhookSecret(ctx, &v1.RotateWebhookSecretRequest{Id: id})
	require.NoError(t, err)
	require.NotEqual(t, secret, rot.GetSecret())
	tr, err := s.webhooks.SendTestWebhook(ctx, &v1.SendTestWebhookRequest{Id: id})
	require.NoError(t, err)
	require.Equal(t, "succeeded", tr.GetDelivery().GetState())
	test := rcv.requests()[len(rcv.requests())-1]
	require.Equal(t, webhook.TestType, test.Type)
	require.Len(t, strings.Fields(test.Signature), 2)
	require.NoError(t, verifyPython(t, []received{test}, rot.GetSecret()), "new secret")
	require.NoError(t, verifyPython(t, []received{test}, secret), "previous secret, during the rotation")

	// The same check refuses a tampered body and a wrong secret.
	tampered := test
	tampered.Body = []byte(strings.Replace(string(test.Body), "webhook.test", "message.sent", 1))
	require.Error(t, verifyPython(t, []received{tampered}, rot.GetSecret()))
	other, err := webhook.NewSecret()
	require.NoError(t, err)
	require.Error(t, verifyPython(t, []received{test}, other))

	// Replay of one delivery: posted again with the same webhook-id.
	before := len(rcv.requests())
	acc := deliveries(id)["message.accepted"]
	rp, err := s.webhooks.ReplayWebhookDeliveries(ctx, &v1.ReplayWebhookDeliveriesRequest{WebhookId: id, DeliveryId: acc.GetId()})
	require.NoError(t, err)
	require.EqualValues(t, 1, rp.GetReplayed())
	got = rcv.waitCount(t, before+1)
	require.Equal(t, acc.GetId(), got[before].ID)
}
