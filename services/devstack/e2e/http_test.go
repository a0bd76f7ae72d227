package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// httpCall is one HTTP/JSON request as a third party would make it (curl).
type httpCall struct {
	method, url string
	key         string // API key; empty: no Authorization header
	body        any    // marshalled to JSON when not nil
	userAgent   string
}

// do runs c and returns the status code and the decoded JSON answer.
func (c httpCall) do(t *testing.T) (int, map[string]any) {
	t.Helper()
	var body io.Reader
	if c.body != nil {
		b, err := json.Marshal(c.body)
		require.NoError(t, err)
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	require.NoError(t, err)
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "body: %s", raw)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), "body: %s", raw)
	return resp.StatusCode, out
}

func TestHTTPJSON(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{http: true})
	keyA, keyB := s.accounts["a"].APIKey, s.accounts["b"].APIKey
	attachment := []byte("%PDF-1.4 \x00\xff binary attachment bytes")
	send := map[string]any{
		"message": map[string]any{
			"from":     map[string]any{"address": "sender@example.com", "name": "Sender"},
			"to":       []any{map[string]any{"address": "jane@example.com", "name": "Jane"}},
			"subject":  "Hello over HTTP",
			"textBody": "Hello from curl",
			"attachments": []any{map[string]any{
				"filename": "report.pdf", "contentType": "application/pdf",
				"content": base64.StdEncoding.EncodeToString(attachment),
			}},
			"tags": map[string]any{"campaign": "http"},
		},
	}

	code, out := httpCall{method: "POST", url: s.ingestURL + "/v1/messages:send", key: keyA, body: send, userAgent: "thirdparty-e2e/1.0"}.do(t)
	require.Equal(t, http.StatusOK, code, out)
	id, _ := out["messageId"].(string)
	require.NotEmpty(t, id, out)
	require.Equal(t, "QUEUED", out["status"])

	// Its status, over HTTP, until SENT.
	var got map[string]any
	require.Eventually(t, func() bool {
		code, got = httpCall{method: "GET", url: s.reportURL + "/v1/messages/" + id, key: keyA}.do(t)
		require.Equal(t, http.StatusOK, code, got)
		return got["message"].(map[string]any)["status"] == "SENT"
	}, 30*time.Second, 50*time.Millisecond, "last answer: %v", got)
	msg := got["message"].(map[string]any)
	require.Equal(t, "Hello over HTTP", msg["subject"])
	require.Equal(t, map[string]any{"campaign": "http"}, msg["tags"])
	require.NotEmpty(t, got["events"])

	// What reached the SMTP server carries the attachment's exact bytes.
	msgs, err := s.sink.WaitFor(waitCtx(t), 1)
	require.NoError(t, err)
	require.Equal(t, attachment, attachmentBytes(t, msgs[0].Data, "report.pdf"))

	// Query parameters: filters by status and tag.
	code, out = httpCall{method: "GET", url: s.reportURL + "/v1/messages?statuses=SENT&tags[campaign]=http&pageSize=10", key: keyA}.do(t)
	require.Equal(t, http.StatusOK, code, out)
	require.Len(t, out["messages"], 1)
	code, out = httpCall{method: "GET", url: s.reportURL + "/v1/messages?statuses=FAILED", key: keyA}.do(t)
	require.Equal(t, http.StatusOK, code, out)
	require.Empty(t, out["messages"])

	t.Run("no key is 401", func(t *testing.T) {
		code, out := httpCall{method: "POST", url: s.ingestURL + "/v1/messages:send", body: send}.do(t)
		require.Equal(t, http.StatusUnauthorized, code, out)
		require.EqualValues(t, 16, out["code"]) // UNAUTHENTICATED
		code, out = httpCall{method: "GET", url: s.reportURL + "/v1/messages/" + id, key: "es_notakey"}.do(t)
		require.Equal(t, http.StatusUnauthorized, code, out)
	})

	t.Run("bad address is 400 naming the field", func(t *testing.T) {
		bad := map[string]any{"message": map[string]any{
			"from":     map[string]any{"address": "sender@example.com"},
			"to":       []any{map[string]any{"address": "not an address"}},
			"subject":  "x",
			"textBody": "x",
		}}
		code, out := httpCall{method: "POST", url: s.ingestURL + "/v1/messages:send", key: keyA, body: bad}.do(t)
		require.Equal(t, http.StatusBadRequest, code, out)
		require.EqualValues(t, 3, out["code"]) // INVALID_ARGUMENT
		require.Contains(t, out["message"], "message.to[0].address")
		details := out["details"].([]any)
		require.Len(t, details, 1)
		d := details[0].(map[string]any)
		require.Equal(t, "type.googleapis.com/google.rpc.BadRequest", d["@type"])
		require.Equal(t, "message.to[0].address", d["fieldViolations"].([]any)[0].(map[string]any)["field"])
	})

	t.Run("another account's message is 404", func(t *testing.T) {
		code, out := httpCall{method: "GET", url: s.reportURL + "/v1/messages/" + id, key: keyB}.do(t)
		require.Equal(t, http.StatusNotFound, code, out)
		require.EqualValues(t, 5, out["code"]) // NOT_FOUND
		code, out = httpCall{method: "POST", url: s.ingestURL + "/v1/messages/" + id + ":cancel", key: keyB, body: map[string]any{}}.do(t)
		require.Equal(t, http.StatusNotFound, code, out)
	})

	t.Run("usage records name the HTTP client", func(t *testing.T) {
		var ip, ua string
		require.Eventually(t, func() bool {
			err := s.db.Pool.QueryRow(context.Background(), `
				SELECT client_ip, user_agent FROM usage_records
				WHERE account_id = $1 AND method = '/emailsender.v1.SendService/SendEmail' AND result = 'OK'`,
				s.accounts["a"].AccountID).Scan(&ip, &ua)
			return err == nil
		}, 10*time.Second, 50*time.Millisecond)
		require.Equal(t, "thirdparty-e2e/1.0", ua, "the HTTP User-Agent, not the gateway's grpc-go")
		require.Equal(t, "127.0.0.1", ip)
	})
}

// attachmentBytes finds the attachment named filename in a raw message and
// returns its decoded content.
func attachmentBytes(t *testing.T, raw []byte, filename string) []byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	var found []byte
	var walk func(ct string, body io.Reader, hdr map[string][]string)
	walk = func(ct string, body io.Reader, hdr map[string][]string) {
		mt, params, err := mime.ParseMediaType(ct)
		require.NoError(t, err)
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					return
				}
				require.NoError(t, err)
				walk(p.Header.Get("Content-Type"), p, p.Header)
			}
		}
		_, dp, err := mime.ParseMediaType(firstOr(hdr["Content-Disposition"]))
		if err != nil || dp["filename"] != filename {
			return
		}
		b, err := io.ReadAll(body)
		require.NoError(t, err)
		found = []byte(decodeQP(t, firstOr(hdr["Content-Transfer-Encoding"]), b))
	}
	walk(m.Header.Get("Content-Type"), m.Body, m.Header)
	require.NotNil(t, found, "no attachment %q", filename)
	return found
}
