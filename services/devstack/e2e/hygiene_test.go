package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// secretSet is the secrets of a scenario and the forms they could leak in.
type secretSet struct {
	needles map[string][]byte // each form of each secret
	byNeed  map[string]string // form -> the secret's name
}

func newSecretSet() *secretSet {
	return &secretSet{needles: map[string][]byte{}, byNeed: map[string]string{}}
}

// add registers a secret: as it is, and base64 (std, URL, raw) and hex
// encoded. extra are more encodings of it (an SMTP AUTH PLAIN blob).
func (ss *secretSet) add(name, secret string, extra ...string) {
	forms := []string{secret,
		base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawStdEncoding.EncodeToString([]byte(secret)),
		base64.URLEncoding.EncodeToString([]byte(secret)), base64.RawURLEncoding.EncodeToString([]byte(secret)),
		hex.EncodeToString([]byte(secret))}
	for _, f := range append(forms, extra...) {
		ss.needles[f] = []byte(f)
		ss.byNeed[f] = name
	}
}

// find returns a description of every secret in b.
func (ss *secretSet) find(b []byte) []string {
	var out []string
	for f, nb := range ss.needles {
		if i := bytes.Index(b, nb); i >= 0 {
			lo, hi := max(0, i-80), min(len(b), i+len(nb)+80)
			out = append(out, fmt.Sprintf("%s (as %q) in …%s…", ss.byNeed[f], f, b[lo:hi]))
		}
	}
	slices.Sort(out)
	return out
}

// answerLog keeps every API answer of a scenario.
type answerLog struct {
	t       *testing.T
	answers []recordedAnswer
}

type recordedAnswer struct{ what, text string }

func (l *answerLog) grpc(what string, resp proto.Message, err error) {
	l.answers = append(l.answers, recordedAnswer{"grpc " + what, answerText(resp, err)})
}

func (l *answerLog) http(what string, code int, body []byte) {
	l.answers = append(l.answers, recordedAnswer{fmt.Sprintf("http %s (%d)", what, code), string(body)})
}

// TestSecretHygiene runs a scenario with known secrets (SMTP passwords, an SES
// secret access key, a Gmail client secret and refresh token, API keys) over
// gRPC and HTTP/JSON, then scans every service's log lines (debug and up),
// every API answer, every column of every table of the schema (bytea as
// bytes), and every message of every JetStream stream and KV bucket: none
// holds a secret, in plain text, base64 or hex. The only exception is
// CreateApiKey's secret field, once, in its own answer.
func TestSecretHygiene(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	// SES and Gmail endpoints where nothing answers (the operator's).
	s := newStack(t, stackOptions{http: true, logs: logs, outbound: kinds.Config{
		SESEndpoint: "http://127.0.0.1:1", GmailTokenURL: "http://127.0.0.1:1/token", GmailAPIEndpoint: "http://127.0.0.1:1/"}})
	tag := randHex(t, 6)
	var (
		smtpUser     = "acme-" + tag
		smtpPassword = "pw-SECRET-7f3a" + tag
		wrongPass    = "pw-WRONG-SECRET-" + tag
		sesSecret    = "ses-SECRET-wJalrXUtnFEMI-K7MDENG-" + tag
		gmailSecret  = "GOCSPX-gmail-client-SECRET-" + tag
		gmailRefresh = "1//gmail-refresh-SECRET-" + tag
		echoPass     = "pw-ECHOED-SECRET-" + tag
		bogusKey     = "es_bogussecret" + tag + "0000000000000000000000000"
	)
	plainBlob := func(pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + smtpUser + "\x00" + pass))
	}
	secrets := newSecretSet()
	secrets.add("smtp password", smtpPassword, plainBlob(smtpPassword))
	secrets.add("wrong smtp password", wrongPass, plainBlob(wrongPass))
	secrets.add("smtp password echoed by the server", echoPass, plainBlob(echoPass))
	secrets.add("ses secret access key", sesSecret)
	secrets.add("gmail client secret", gmailSecret)
	secrets.add("gmail refresh token", gmailRefresh)
	secrets.add("api key", s.accounts["a"].APIKey)
	secrets.add("other account's api key", s.accounts["b"].APIKey)
	secrets.add("unknown api key", bogusKey)

	sink := smtpsink.StartTest(t, smtpsink.Options{Username: smtpUser, Password: smtpPassword})
	key := s.accounts["a"].APIKey
	ctx := s.ctx("a")
	got := &answerLog{t: t}
	echo := echoAuthServer(t)
	smtpSettings := func(pass string) *v1.PutProviderRequest_Smtp {
		return &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{Host: sink.Host(), Port: int32(sink.Port()), TlsMode: "none",
			Username: smtpUser, Password: pass, PoolSize: 2}}
	}
	put := func(what string, req *v1.PutProviderRequest) string {
		resp, err := s.account.PutProvider(ctx, req)
		got.grpc("PutProvider "+what, resp, err)
		require.NoError(t, err, what)
		require.NotEmpty(t, resp.GetProvider().GetSecretsSet(), what)
		return resp.GetProvider().GetId()
	}

	// Providers with secrets, and one refused for a bad field beside a secret.
	good := put("smtp", &v1.PutProviderRequest{Name: "smtp-good", Settings: smtpSettings(smtpPassword)})
	wrong := put("smtp with a wrong password", &v1.PutProviderRequest{Name: "smtp-wrong", Settings: smtpSettings(wrongPass)})
	// A server that repeats the credentials in its refusal, plain and base64.
	echoed := put("smtp to a server echoing credentials", &v1.PutProviderRequest{Name: "smtp-echo", Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
		Host: "127.0.0.1", Port: int32(echo.Addr().(*net.TCPAddr).Port), TlsMode: "none", Username: smtpUser, Password: echoPass}}})
	ses := put("ses", &v1.PutProviderRequest{Name: "ses", Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
		Region: "eu-west-1", AccessKeyId: "AKIA" + strings.ToUpper(tag), SecretAccessKey: sesSecret}}})
	gmail := put("gmail", &v1.PutProviderRequest{Name: "gmail", Settings: &v1.PutProviderRequest_Gmail{Gmail: &v1.GmailSettings{
		ClientId: "client-" + tag + ".apps.googleusercontent.com", ClientSecret: gmailSecret, RefreshToken: gmailRefresh,
		SenderUser: "me@example.com"}}})
	resp, err := s.account.PutProvider(ctx, &v1.PutProviderRequest{Name: "ses-bad", Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
		Region: "nowhere", AccessKeyId: "AKIA" + strings.ToUpper(tag), SecretAccessKey: sesSecret}}})
	got.grpc("PutProvider ses with a bad region", resp, err)
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	// Replace over HTTP, the password left empty (kept).
	code, body := httpRaw(t, "PUT", s.ingestURL+"/v1/providers/"+good, key, map[string]any{
		"name": "smtp-good", "makeDefault": true,
		"smtp": map[string]any{"host": sink.Host(), "port": sink.Port(), "tlsMode": "none", "username": smtpUser, "poolSize": 3}})
	got.http("PutProvider replace smtp", code, body)
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.Contains(t, string(body), `"password"`, "secrets_set still names the kept password")

	// A send through the wrong password fails on credentials, in the worker.
	req := simple("first@example.org")
	req.ProviderId = wrong
	failed := s.sendOK("a", req)
	gm := s.waitStatus("a", failed, v1.MessageStatus_FAILED)
	got.grpc("GetMessage failed", gm, nil)
	req = simple("echo@example.org")
	req.ProviderId = echoed
	failedEcho := s.sendOK("a", req)
	gm = s.waitStatus("a", failedEcho, v1.MessageStatus_FAILED)
	got.grpc("GetMessage failed on an echoing server", gm, nil)
	require.Contains(t, gm.GetMessage().GetLastError(), "535", "the server's refusal is reported")

	// Verify every provider: smtp logs in; the wrong password is refused; ses
	// and gmail say what they say.
	for _, id := range []string{good, wrong, echoed, ses, gmail} {
		resp, err := s.account.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: id})
		got.grpc("VerifyProvider", resp, err)
		require.NoError(t, err)
		require.Equal(t, id == good, resp.GetResult().GetOk(), "%s: %v", id, resp.GetResult())
	}
	code, body = httpRaw(t, "POST", s.ingestURL+"/v1/providers/"+wrong+":verify", key, map[string]any{})
	got.http("VerifyProvider wrong password", code, body)
	require.Equal(t, http.StatusOK, code, "%s", body)

	// Sends through the good provider, over gRPC and HTTP, until SENT.
	req = simple("second@example.org")
	req.ProviderId = good
	sent := []string{s.sendOK("a", req)}
	code, body = httpRaw(t, "POST", s.ingestURL+"/v1/messages:send", key, map[string]any{"providerId": good, "message": map[string]any{
		"from": map[string]any{"address": "sender@example.com"}, "to": []any{map[string]any{"address": "third@example.org"}},
		"subject": "over http", "textBody": "hello"}})
	got.http("SendEmail", code, body)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var sr struct{ MessageId string }
	require.NoError(t, json.Unmarshal(body, &sr))
	sent = append(sent, sr.MessageId)
	for _, id := range sent {
		got.grpc("GetMessage sent", s.waitStatus("a", id, v1.MessageStatus_SENT), nil)
	}
	msgs, err := sink.WaitFor(waitCtx(t), 2)
	require.NoError(t, err)
	require.Equal(t, smtpUser, msgs[0].Username, "the good provider authenticated")

	// Keys: made over gRPC and HTTP, used, revoked, used again.
	ck, err := s.account.CreateApiKey(ctx, &v1.CreateApiKeyRequest{Name: "second", Scopes: []string{auth.ScopeAdmin}})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(ck.GetSecret(), "es_"))
	secrets.add("created api key (gRPC)", ck.GetSecret())
	ckOther := proto.Clone(ck).(*v1.CreateApiKeyResponse)
	ckOther.Secret = "" // the one place the secret may be
	got.grpc("CreateApiKey (secret field left out)", ckOther, nil)
	lk, err := s.account.ListApiKeys(withKey(t, ck.GetSecret()), &v1.ListApiKeysRequest{})
	got.grpc("ListApiKeys with the new key", lk, err)
	require.NoError(t, err)
	rk, err := s.account.RevokeApiKey(ctx, &v1.RevokeApiKeyRequest{Id: ck.GetKey().GetId()})
	got.grpc("RevokeApiKey", rk, err)
	require.NoError(t, err)
	_, err = s.account.ListApiKeys(withKey(t, ck.GetSecret()), &v1.ListApiKeysRequest{})
	got.grpc("ListApiKeys with the revoked key", nil, err)
	require.Equal(t, codes.Unauthenticated, status.Code(err))

	code, body = httpRaw(t, "POST", s.ingestURL+"/v1/apiKeys", key, map[string]any{"name": "third", "scopes": []string{"read"}})
	require.Equal(t, http.StatusOK, code, "%s", body)
	var hk struct {
		Key    struct{ Id string }
		Secret string
	}
	require.NoError(t, json.Unmarshal(body, &hk))
	require.True(t, strings.HasPrefix(hk.Secret, "es_"))
	require.Equal(t, 1, strings.Count(string(body), hk.Secret), "the secret is in its field only: %s", body)
	secrets.add("created api key (HTTP)", hk.Secret)
	got.http("CreateApiKey (secret field left out)", code, bytes.Replace(body, []byte(hk.Secret), []byte("<secret>"), 1))
	code, body = httpRaw(t, "GET", s.reportURL+"/v1/messages/"+sent[1], hk.Secret, nil)
	got.http("GetMessage with the new key", code, body)
	require.Equal(t, http.StatusOK, code, "%s", body)
	code, body = httpRaw(t, "POST", s.ingestURL+"/v1/apiKeys/"+hk.Key.Id+":revoke", key, map[string]any{})
	got.http("RevokeApiKey", code, body)
	require.Equal(t, http.StatusOK, code, "%s", body)
	code, body = httpRaw(t, "GET", s.reportURL+"/v1/messages/"+sent[1], hk.Secret, nil)
	got.http("GetMessage with the revoked key", code, body)
	require.Equal(t, http.StatusUnauthorized, code, "%s", body)

	// An unknown key.
	_, err = s.report.GetMessage(withKey(t, bogusKey), &v1.GetMessageRequest{MessageId: sent[0]})
	got.grpc("GetMessage with an unknown key", nil, err)
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	code, body = httpRaw(t, "GET", s.reportURL+"/v1/messages", bogusKey, nil)
	got.http("ListMessages with an unknown key", code, body)
	require.Equal(t, http.StatusUnauthorized, code, "%s", body)

	// Everything readable, over both.
	for _, id := range append(sent, failed, failedEcho) {
		r, err := s.report.GetMessage(ctx, &v1.GetMessageRequest{MessageId: id})
		got.grpc("GetMessage", r, err)
		require.NoError(t, err)
		code, body := httpRaw(t, "GET", s.reportURL+"/v1/messages/"+id, key, nil)
		got.http("GetMessage", code, body)
		require.Equal(t, http.StatusOK, code, "%s", body)
	}
	lm, err := s.report.ListMessages(ctx, &v1.ListMessagesRequest{})
	got.grpc("ListMessages", lm, err)
	require.NoError(t, err)
	gs, err := s.report.GetStats(ctx, &v1.GetStatsRequest{})
	got.grpc("GetStats", gs, err)
	require.NoError(t, err)
	lp, err := s.account.ListProviders(ctx, &v1.ListProvidersRequest{})
	got.grpc("ListProviders", lp, err)
	require.NoError(t, err)
	require.Len(t, lp.GetProviders(), 6)
	for _, p := range lp.GetProviders() {
		if p.GetId() == wrong || p.GetId() == echoed {
			require.False(t, p.GetHealthy(), "refused credentials mark the provider unhealthy")
			require.NotEmpty(t, p.GetLastVerify().GetDetail())
		}
	}
	la, err := s.account.ListApiKeys(ctx, &v1.ListApiKeysRequest{})
	got.grpc("ListApiKeys", la, err)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		lu, err := s.account.ListUsage(ctx, &v1.ListUsageRequest{Method: "RevokeApiKey"})
		require.NoError(t, err)
		return len(lu.GetRecords()) == 2
	}, 10*time.Second, 50*time.Millisecond)
	lu, err := s.account.ListUsage(ctx, &v1.ListUsageRequest{PageSize: 1000})
	got.grpc("ListUsage", lu, err)
	require.NoError(t, err)
	for _, u := range []string{s.reportURL + "/v1/messages", s.reportURL + "/v1/stats", s.ingestURL + "/v1/providers",
		s.ingestURL + "/v1/apiKeys", s.ingestURL + "/v1/usage?pageSize=1000", s.ingestURL + "/v1/senders"} {
		code, body := httpRaw(t, "GET", u, key, nil)
		got.http("GET "+u, code, body)
		require.Equal(t, http.StatusOK, code, "%s: %s", u, body)
	}
	// Let the last asynchronous writes (usage records, report events) land.
	settle(t, s, s.accounts["a"].AccountID)

	t.Run("logs", func(t *testing.T) {
		all := logs.String()
		require.Contains(t, all, "level=DEBUG", "debug lines are captured")
		// A line of each service: ingest, worker, report.
		for _, want := range []string{"provider verified", "message failed", "consuming events"} {
			require.Contains(t, all, want, "the scenario's log lines are captured")
		}
		for _, line := range strings.Split(all, "\n") {
			require.Empty(t, secrets.find([]byte(line)), "a log line holds a secret")
		}
		t.Logf("%d log lines scanned", strings.Count(all, "\n"))
	})

	t.Run("answers", func(t *testing.T) {
		require.Greater(t, len(got.answers), 40)
		for _, a := range got.answers {
			require.Empty(t, secrets.find([]byte(a.text)), "the answer to %s holds a secret", a.what)
		}
		t.Logf("%d answers scanned", len(got.answers))
	})

	t.Run("database", func(t *testing.T) {
		cells := scanDatabase(t, s, secrets)
		t.Logf("%d non-null cells scanned", cells)

		// The secrets were stored, sealed: each opens to its plaintext.
		rows, err := s.db.Pool.Query(context.Background(), `SELECT id::text, secret FROM provider_configs WHERE secret IS NOT NULL`)
		require.NoError(t, err)
		opened := map[string]string{}
		var (
			id   string
			blob []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &blob}, func() error {
			plain, err := s.keyring.Open(blob, []byte(id))
			if err != nil {
				return err
			}
			opened[id] = string(plain)
			return nil
		})
		require.NoError(t, err)
		require.Contains(t, opened[good], smtpPassword)
		require.Contains(t, opened[wrong], wrongPass)
		require.Contains(t, opened[ses], sesSecret)
		require.Contains(t, opened[gmail], gmailSecret)
		require.Contains(t, opened[gmail], gmailRefresh)
	})

	t.Run("jetstream", func(t *testing.T) {
		n := scanJetStream(t, s, secrets)
		t.Logf("%d stream messages scanned", n)
	})
}

// scanDatabase scans every column of every table of the test's schema (from
// the catalog): bytea as bytes, everything else as text, and every row as a
// whole. It returns the number of non-null cells.
func scanDatabase(t *testing.T, s *stack, secrets *secretSet) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := s.db.Pool.Query(ctx, `
		SELECT c.table_name, c.column_name, c.data_type
		FROM information_schema.columns c
		JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
		WHERE c.table_schema = $1 AND tb.table_type = 'BASE TABLE'
		  -- a partitioned table's rows are read through it, not its partitions
		  AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = format('%I.%I', c.table_schema, c.table_name)::regclass)
		ORDER BY c.table_name, c.ordinal_position`, s.db.Schema)
	require.NoError(t, err)
	type column struct{ table, name, typ string }
	var cols []column
	var c column
	_, err = pgx.ForEachRow(rows, []any{&c.table, &c.name, &c.typ}, func() error {
		cols = append(cols, c)
		return nil
	})
	require.NoError(t, err)
	tables := map[string]bool{}
	cells := 0
	bytea := 0
	for _, c := range cols {
		tables[c.table] = true
		tbl := pgx.Identifier{s.db.Schema, c.table}.Sanitize()
		col := pgx.Identifier{c.name}.Sanitize()
		var q string
		if c.typ == "bytea" {
			q = fmt.Sprintf(`SELECT %s FROM %s WHERE %s IS NOT NULL`, col, tbl, col)
		} else {
			q = fmt.Sprintf(`SELECT %s::text FROM %s WHERE %s IS NOT NULL`, col, tbl, col)
		}
		rows, err := s.db.Pool.Query(ctx, q)
		require.NoError(t, err, q)
		var v []byte
		_, err = pgx.ForEachRow(rows, []any{&v}, func() error {
			cells++
			if c.typ == "bytea" {
				bytea++
			}
			require.Empty(t, secrets.find(v), "%s.%s (%s) holds a secret", c.table, c.name, c.typ)
			return nil
		})
		require.NoError(t, err, q)
	}
	for tb := range tables {
		rows, err := s.db.Pool.Query(ctx, fmt.Sprintf(`SELECT t::text FROM %s t`, pgx.Identifier{s.db.Schema, tb}.Sanitize()))
		require.NoError(t, err)
		var v []byte
		_, err = pgx.ForEachRow(rows, []any{&v}, func() error {
			require.Empty(t, secrets.find(v), "a row of %s holds a secret", tb)
			return nil
		})
		require.NoError(t, err)
	}
	for _, want := range []string{"provider_configs", "api_keys", "messages", "message_contents", "events", "usage_records"} {
		require.True(t, tables[want], "table %s scanned", want)
	}
	require.Positive(t, bytea, "bytea cells scanned (sealed secrets, key hashes, job contents)")
	return cells
}

// scanJetStream scans every message (data, headers, subject) of every stream,
// KV buckets included (their streams hold every revision).
func scanJetStream(t *testing.T, s *stack, secrets *secretSet) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var names []string
	lister := s.js.StreamNames(ctx)
	for name := range lister.Name() {
		names = append(names, name)
	}
	require.NoError(t, lister.Err())
	for _, want := range []string{queue.SendStream, queue.EventStream, "KV_" + queue.AttemptsBucket, "KV_" + auth.RevocationBucket} {
		require.Contains(t, names, want, "streams")
	}
	n := 0
	for _, name := range names {
		st, err := s.js.Stream(ctx, name)
		require.NoError(t, err)
		info, err := st.Info(ctx)
		require.NoError(t, err)
		if info.State.Msgs == 0 {
			continue
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			require.NoError(t, err, "%s seq %d", name, seq)
			n++
			var all bytes.Buffer
			all.WriteString(m.Subject + "\n")
			for k, vs := range m.Header {
				all.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
			}
			all.Write(m.Data)
			require.Empty(t, secrets.find(all.Bytes()), "message %d of stream %s holds a secret", seq, name)
		}
	}
	require.Positive(t, n, "stream messages scanned")
	return n
}

// echoAuthServer is an SMTP server that refuses every login, repeating the
// credentials it was given in its 535 reply (decoded and as sent), as a
// careless or hostile server could.
func echoAuthServer(t *testing.T) net.Listener {
	t.Helper()
	l := listen(t)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				tp := textproto.NewConn(c)
				_ = tp.PrintfLine("220 echo.test ESMTP")
				for {
					line, err := tp.ReadLine()
					if err != nil {
						return
					}
					verb, arg, _ := strings.Cut(line, " ")
					switch strings.ToUpper(verb) {
					case "EHLO", "HELO":
						_ = tp.PrintfLine("250-echo.test\r\n250-AUTH PLAIN\r\n250 8BITMIME")
					case "AUTH":
						_, blob, _ := strings.Cut(arg, " ")
						if blob == "" {
							_ = tp.PrintfLine("334 ")
							if blob, err = tp.ReadLine(); err != nil {
								return
							}
						}
						dec, _ := base64.StdEncoding.DecodeString(blob)
						_ = tp.PrintfLine("535 5.7.8 Authentication failed for %q (%s)", strings.ReplaceAll(string(dec), "\x00", " "), blob)
					case "QUIT":
						_ = tp.PrintfLine("221 bye")
						return
					case "RSET", "NOOP":
						_ = tp.PrintfLine("250 ok")
					default:
						_ = tp.PrintfLine("530 5.7.0 Authentication required")
					}
				}
			}()
		}
	}()
	return l
}
