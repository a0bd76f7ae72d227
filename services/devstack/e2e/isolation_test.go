package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// apiMethods are the full names ("/emailsender.v1.SendService/SendEmail") of
// every RPC of every service of the public API package, from the registered
// file descriptors: a new RPC, or a new service, shows up here by itself.
func apiMethods(t *testing.T) []string {
	t.Helper()
	var out []string
	files := map[string]bool{}
	protoregistry.GlobalFiles.RangeFilesByPackage("emailsender.v1", func(fd protoreflect.FileDescriptor) bool {
		files[fd.Path()] = true
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				out = append(out, "/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	for _, fd := range []protoreflect.FileDescriptor{v1.File_emailsender_v1_send_proto, v1.File_emailsender_v1_report_proto, v1.File_emailsender_v1_account_proto} {
		require.True(t, files[fd.Path()], "%s is not registered under emailsender.v1", fd.Path())
		require.Positive(t, fd.Services().Len(), "%s has no service", fd.Path())
	}
	sort.Strings(out)
	// DeleteAccountData last: were it ever to succeed, the caller's key would
	// stop working and every later row would fail for that reason instead.
	last := v1.AccountService_DeleteAccountData_FullMethodName
	if i := slices.Index(out, last); i >= 0 {
		out = append(slices.Delete(out, i, i+1), last)
	}
	return out
}

// call invokes an RPC of a generated client as a row's call.
type callFunc func(ctx context.Context) (proto.Message, error)

func rpc[Req, Resp proto.Message](f func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) callFunc {
	return func(ctx context.Context) (proto.Message, error) {
		resp, err := f(ctx, req)
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
}

// answerText is what a caller learns from an answer: the response as JSON, or
// the status with its details.
func answerText(resp proto.Message, err error) string {
	if err != nil {
		b, _ := protojson.Marshal(status.Convert(err).Proto())
		return string(b)
	}
	b, _ := protojson.Marshal(resp)
	return string(b)
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// isoFixture is account A's data that account B then goes after.
type isoFixture struct {
	a, b isoAccount
	tag  string

	sentID, scheduledID                  string
	subject, rcpt, tagValue, idemKey     string
	extraKeyID, extraKeySecret           string
	smtpProviderID, sandboxProviderID    string
	providerName, keyName                string
	verifiedSender, pendingSender        string // addresses
	verifiedSenderID, pendingSenderID    string
	sharedSender, sharedSuppression      string // values B may use for itself too
	pendingCode                          string // the mailed code of the pending sender
	suppressed                           string
	msgToken, suppressionToken, usageTok string
	webhookID, webhookURL                string
	// bounceDomain is A's verified bounce domain; bounceRecord the TXT value
	// that proved it (A's token).
	bounceDomain, bounceRecord string
	// templateID is A's published template, templateAlias its alias (B may
	// use the same alias for a template of its own: aliases are per
	// account), templateSubject a marker in its content.
	templateID, templateAlias, templateSubject string
	keyIDs, messageIDs, senderIDs, prefix      []string

	// markers are strings of A's that no answer to B may contain.
	markers []string
}

type isoAccount struct{ accountID, providerID, keyID, key string }

var codeRE = regexp.MustCompile(`is:\s+(\d{8})`)

// mailedCode waits for the sender verification mail to addr and returns its code.
func mailedCode(t *testing.T, s *stack, addr string) string {
	t.Helper()
	var code string
	require.Eventually(t, func() bool {
		for _, m := range s.sink.Messages() {
			if !slices.Contains(lower(m.To), addr) {
				continue
			}
			msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
			require.NoError(t, err)
			body, err := io.ReadAll(msg.Body)
			require.NoError(t, err)
			if sm := codeRE.FindStringSubmatch(decodeQP(t, msg.Header.Get("Content-Transfer-Encoding"), body)); sm != nil {
				code = sm[1]
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "no verification mail to %s", addr)
	return code
}

func setupIsolation(t *testing.T, s *stack) *isoFixture {
	t.Helper()
	a, b := s.accounts["a"], s.accounts["b"]
	tag := randHex(t, 4)
	fx := &isoFixture{
		a:   isoAccount{a.AccountID, a.ProviderID, a.APIKeyID, a.APIKey},
		b:   isoAccount{b.AccountID, b.ProviderID, b.APIKeyID, b.APIKey},
		tag: tag, smtpProviderID: a.ProviderID,
		subject: "subject-of-a-" + tag, rcpt: "rcpt-a-" + tag + "@example.org", tagValue: "tag-a-" + tag,
		idemKey: "idem-" + tag, providerName: "prov-a-" + tag, keyName: "key-a-" + tag,
		verifiedSender: "verified-a-" + tag + "@a-only.example", pendingSender: "pending-a-" + tag + "@a-only.example",
		sharedSender: "shared-" + tag + "@shared.example", sharedSuppression: "shared-" + tag + "@example.org",
		suppressed: "suppressed-a-" + tag + "@example.org",
	}
	ctx := s.ctx("a")

	k, err := s.account.CreateApiKey(ctx, &v1.CreateApiKeyRequest{Name: fx.keyName, Scopes: []string{auth.ScopeRead}})
	require.NoError(t, err)
	fx.extraKeyID, fx.extraKeySecret = k.GetKey().GetId(), k.GetSecret()

	p, err := s.account.PutProvider(ctx, &v1.PutProviderRequest{Name: fx.providerName, Settings: &v1.PutProviderRequest_Sandbox{Sandbox: &v1.SandboxSettings{}}})
	require.NoError(t, err)
	fx.sandboxProviderID = p.GetProvider().GetId()

	for _, addr := range []string{fx.verifiedSender, fx.pendingSender, fx.sharedSender} {
		r, err := s.account.AddSender(ctx, &v1.AddSenderRequest{Address: addr})
		require.NoError(t, err)
		switch addr {
		case fx.verifiedSender:
			fx.verifiedSenderID = r.GetSender().GetId()
		case fx.pendingSender:
			fx.pendingSenderID = r.GetSender().GetId()
		}
	}
	v, err := s.account.VerifySender(ctx, &v1.VerifySenderRequest{Id: fx.verifiedSenderID, Code: mailedCode(t, s, fx.verifiedSender)})
	require.NoError(t, err)
	require.Equal(t, "verified", v.GetSender().GetStatus())
	fx.pendingCode = mailedCode(t, s, fx.pendingSender)

	for _, addr := range []string{fx.suppressed, fx.sharedSuppression} {
		_, err := s.account.AddSuppression(ctx, &v1.AddSuppressionRequest{Address: addr})
		require.NoError(t, err)
	}

	req := simple(fx.rcpt)
	req.Message.Subject = fx.subject
	req.Message.Tags = map[string]string{"campaign": fx.tagValue}
	req.IdempotencyKey = fx.idemKey
	fx.sentID = s.sendOK("a", req)
	sched := simple(fx.rcpt)
	sched.Message.Subject = fx.subject
	sched.SendAt = timestamppb.New(time.Now().Add(time.Hour))
	fx.scheduledID = s.sendOK("a", sched)
	s.waitStatus("a", fx.sentID, v1.MessageStatus_SENT)

	// A's page tokens, for B to present as its own.
	lm, err := s.report.ListMessages(ctx, &v1.ListMessagesRequest{PageSize: 1})
	require.NoError(t, err)
	fx.msgToken = lm.GetNextPageToken()
	require.NotEmpty(t, fx.msgToken)
	ls, err := s.account.ListSuppressions(ctx, &v1.ListSuppressionsRequest{PageSize: 1})
	require.NoError(t, err)
	fx.suppressionToken = ls.GetNextPageToken()
	require.NotEmpty(t, fx.suppressionToken)
	require.Eventually(t, func() bool {
		lu, err := s.account.ListUsage(ctx, &v1.ListUsageRequest{PageSize: 1})
		require.NoError(t, err)
		fx.usageTok = lu.GetNextPageToken()
		return fx.usageTok != ""
	}, 10*time.Second, 50*time.Millisecond)

	// A's webhook, whose deliveries of A's events succeed.
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(recv.Close)
	fx.webhookURL = recv.URL + "/hook-of-a-" + tag
	wh, err := s.webhooks.CreateWebhook(ctx, &v1.CreateWebhookRequest{Url: fx.webhookURL})
	require.NoError(t, err)
	fx.webhookID = wh.GetWebhook().GetId()

	// A's own bounce domain, verified through the stack's DNS server.
	fx.bounceDomain = "bounces-a-" + tag + ".example"
	bd, err := s.account.SetBounceDomain(ctx, &v1.SetBounceDomainRequest{Domain: fx.bounceDomain})
	require.NoError(t, err)
	fx.bounceRecord = bd.GetBounceDomain().GetVerificationRecordValue()
	s.dns.SetTXT(bd.GetBounceDomain().GetVerificationRecordName(), fx.bounceRecord)
	vd, err := s.account.VerifyBounceDomain(ctx, &v1.VerifyBounceDomainRequest{})
	require.NoError(t, err)
	require.Equal(t, "verified", vd.GetBounceDomain().GetStatus())

	// A's template, published.
	fx.templateAlias = "welcome-" + tag
	fx.templateSubject = "Welcome from A " + tag
	tpl, err := s.templates.CreateTemplate(ctx, &v1.CreateTemplateRequest{Alias: fx.templateAlias, Name: "A's welcome " + tag,
		Content: &v1.TemplateContent{Subject: fx.templateSubject, Html: "<p>Hello {{name}} of A " + tag + "</p>"}})
	require.NoError(t, err)
	fx.templateID = tpl.GetTemplate().GetId()
	_, err = s.templates.PublishTemplate(ctx, &v1.PublishTemplateRequest{Template: fx.templateID, Version: 1})
	require.NoError(t, err)

	keys, err := s.account.ListApiKeys(ctx, &v1.ListApiKeysRequest{})
	require.NoError(t, err)
	for _, k := range keys.GetKeys() {
		fx.keyIDs = append(fx.keyIDs, k.GetId())
		fx.prefix = append(fx.prefix, k.GetPrefix())
	}
	senders, err := s.account.ListSenders(ctx, &v1.ListSendersRequest{})
	require.NoError(t, err)
	for _, x := range senders.GetSenders() {
		fx.senderIDs = append(fx.senderIDs, x.GetId())
	}

	// Everything of A settles: messages final (or SCHEDULED), usage written,
	// report events applied.
	settle(t, s, fx.a.accountID)
	// Ingest deletes the content of delivered sender verification mails in
	// its retention pass (at start, then every RETENTION_INTERVAL): a first
	// pass slow enough under load ran after A's verification mails were
	// sent, in the middle of B's calls. The pass's purge is done here, so A's
	// state is final before the snapshot whenever the loop runs.
	_, err = store.PurgeVerificationContent(ctx, s.db.Pool, 1000)
	require.NoError(t, err)
	rows, err := s.db.Pool.Query(context.Background(), `SELECT id::text FROM messages WHERE account_id = $1`, fx.a.accountID)
	require.NoError(t, err)
	fx.messageIDs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(fx.messageIDs), 5, "A's messages: 3 verification mails, a sent one, a scheduled one")

	fx.markers = append(fx.markers, fx.a.accountID, fx.a.providerID, fx.sandboxProviderID, fx.subject, fx.rcpt, fx.tagValue,
		fx.idemKey, fx.providerName, fx.keyName, fx.verifiedSender, fx.pendingSender, fx.suppressed, fx.pendingCode,
		fx.webhookID, fx.webhookURL, fx.bounceRecord, fx.templateID, fx.templateSubject)
	fx.markers = append(fx.markers, fx.keyIDs...)
	fx.markers = append(fx.markers, fx.prefix...)
	fx.markers = append(fx.markers, fx.senderIDs...)
	fx.markers = append(fx.markers, fx.messageIDs...)
	return fx
}

// settle waits until the account's data stops changing: none of its messages
// is queued or being sent, no change of its message counts waits for the
// report's fold into message_stats, and three snapshots in a row are equal.
func settle(t *testing.T, s *stack, accountID string) {
	t.Helper()
	var prev accountSnapshot
	same := 0
	require.Eventually(t, func() bool {
		var pending int
		require.NoError(t, s.db.Pool.QueryRow(context.Background(), `
			SELECT (SELECT count(*) FROM messages WHERE account_id = $1 AND status IN ($2, $3, $4))
				+ (SELECT count(*) FROM message_stats_pending WHERE account_id = $1)`,
			accountID, int16(v1.MessageStatus_QUEUED), int16(v1.MessageStatus_SENDING), int16(v1.MessageStatus_RETRYING)).Scan(&pending))
		cur := snapshotAccount(t, s, accountID, nil)
		if pending == 0 && prev != nil && equalSnapshots(prev, cur) {
			same++
		} else {
			same = 0
		}
		prev = cur
		return same >= 2
	}, 20*time.Second, 150*time.Millisecond, "account %s does not settle", accountID)
}

// accountSnapshot is an account's whole state: per table with an account_id
// column (found in the catalog) the count and hash of its rows, its account
// row, its messages' statuses, and its JetStream messages and KV entries.
type accountSnapshot map[string]string

func equalSnapshots(a, b accountSnapshot) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// snapshotAccount takes accountID's snapshot; skip lists tables left out.
func snapshotAccount(t *testing.T, s *stack, accountID string, skip []string) accountSnapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	snap := accountSnapshot{}
	rows, err := s.db.Pool.Query(ctx, `
		SELECT c.table_name FROM information_schema.columns c
		JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
		WHERE c.table_schema = $1 AND c.column_name = 'account_id' AND tb.table_type = 'BASE TABLE'
		  -- a partitioned table's rows are read through it, not its partitions
		  AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = format('%I.%I', c.table_schema, c.table_name)::regclass)
		ORDER BY 1`, s.db.Schema)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for _, want := range []string{"api_keys", "provider_configs", "messages", "recipients", "events", "outbox", "idempotency_keys", "senders", "suppressions", "usage_records"} {
		require.Contains(t, tables, want, "tables with an account_id column")
	}
	for _, tb := range tables {
		if slices.Contains(skip, tb) {
			continue
		}
		var (
			n int64
			h string
		)
		err := s.db.Pool.QueryRow(ctx, fmt.Sprintf(`
			SELECT count(*), coalesce(md5(string_agg(t::text, E'\n' ORDER BY t::text)), '')
			FROM %s t WHERE account_id = $1`, pgx.Identifier{s.db.Schema, tb}.Sanitize()), accountID).Scan(&n, &h)
		require.NoError(t, err, tb)
		snap["table "+tb] = fmt.Sprintf("%d rows, md5 %s", n, h)
	}
	var acct string
	require.NoError(t, s.db.Pool.QueryRow(ctx, `SELECT t::text FROM accounts t WHERE id = $1`, accountID).Scan(&acct))
	snap["accounts row"] = acct
	var deletions int64
	require.NoError(t, s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM account_deletions`).Scan(&deletions))
	snap["account_deletions (all)"] = fmt.Sprint(deletions)

	rows, err = s.db.Pool.Query(ctx, `SELECT id::text, status FROM messages WHERE account_id = $1`, accountID)
	require.NoError(t, err)
	var (
		id  string
		st  int16
		ids []string
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &st}, func() error {
		snap["status of "+id] = v1.MessageStatus_Value(st).String()
		ids = append(ids, id)
		return nil
	})
	require.NoError(t, err)

	for _, sp := range []struct{ stream, filter string }{
		{queue.SendStream, queue.SendAccountFilter(accountID)},
		{queue.EventStream, queue.EventAccountFilter(accountID)},
	} {
		st, err := s.js.Stream(ctx, sp.stream)
		require.NoError(t, err)
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(sp.filter))
		require.NoError(t, err)
		subjects := make([]string, 0, len(info.State.Subjects))
		for subj, n := range info.State.Subjects {
			subjects = append(subjects, fmt.Sprintf("%s=%d", subj, n))
		}
		sort.Strings(subjects)
		snap["stream "+sp.stream] = strings.Join(subjects, " ")
	}
	var keyIDs []string
	rows, err = s.db.Pool.Query(ctx, `SELECT id::text FROM api_keys WHERE account_id = $1`, accountID)
	require.NoError(t, err)
	keyIDs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for _, kb := range []struct {
		bucket string
		keys   []string
	}{{auth.RevocationBucket, keyIDs}, {queue.AttemptsBucket, ids}} {
		kv, err := s.js.KeyValue(ctx, kb.bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			snap["kv "+kb.bucket] = "no bucket"
			continue
		}
		require.NoError(t, err)
		for _, k := range kb.keys {
			e, err := kv.Get(ctx, k)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				require.NoError(t, err)
			default:
				snap["kv "+kb.bucket+" "+k] = fmt.Sprintf("rev %d op %v", e.Revision(), e.Operation())
			}
		}
	}
	return snap
}

// isoCase is one way account B goes after account A's data with one RPC.
type isoCase struct {
	name string
	call callFunc
	want codes.Code
	// target is A's identifier the call names (an error may echo it back);
	// control is the same call naming control instead, an identifier that
	// exists nowhere: its answer must be the same as for A's (no oracle).
	target, control string
	controlCall     callFunc
	// check runs on an OK answer.
	check func(t *testing.T, resp proto.Message)
}

// isolationCases maps every RPC to its rows.
func isolationCases(t *testing.T, s *stack, fx *isoFixture) map[string][]isoCase {
	missingID := uuid.NewString()
	missingV7 := uuid.Must(uuid.NewV7()).String()
	noneOf := func(what string, ids ...string) func(*testing.T, proto.Message) {
		return func(t *testing.T, resp proto.Message) {
			txt := answerText(resp, nil)
			for _, id := range ids {
				require.NotContains(t, txt, id, "%s", what)
			}
		}
	}
	sendFrom := func(from string) *v1.SendEmailRequest {
		r := simple("someone@example.org")
		r.Message.From.Address = from
		return r
	}
	withProvider := func(id string) *v1.SendEmailRequest {
		r := simple("someone@example.org")
		r.ProviderId = id
		return r
	}
	withTemplate := func(ref string) *v1.SendEmailRequest {
		r := simple("someone@example.org")
		r.Message.Subject, r.Message.TextBody, r.Message.HtmlBody = "", "", ""
		r.Template = &v1.TemplateRef{Template: ref}
		return r
	}
	batch := func(reqs ...*v1.SendEmailRequest) *v1.SendBatchRequest { return &v1.SendBatchRequest{Messages: reqs} }
	tplContent := &v1.TemplateContent{Subject: "B's subject", Html: "<p>B</p>"}
	notFound := func(name string, call func(ref string) callFunc) isoCase {
		return isoCase{name: name, want: codes.NotFound, call: call(fx.templateID), target: fx.templateID,
			controlCall: call(missingID), control: missingID}
	}
	rejected := func(code codes.Code) func(*testing.T, proto.Message) {
		return func(t *testing.T, resp proto.Message) {
			res := resp.(*v1.SendBatchResponse).GetResults()
			require.Len(t, res, 1)
			require.Nil(t, res[0].GetAccepted())
			require.EqualValues(t, code, res[0].GetErrorCode(), res[0].GetErrorMessage())
		}
	}
	idem := simple("someone-b@example.org")
	idem.Message.Subject = "b's own message"
	idem.IdempotencyKey = fx.idemKey
	sandbox := &v1.PutProviderRequest_Sandbox{Sandbox: &v1.SandboxSettings{}}
	bStats := func(t *testing.T, resp proto.Message) {
		r := resp.(*v1.GetStatsResponse)
		var sum int64
		for _, n := range r.GetTotals() {
			sum += n
		}
		var own int64
		require.NoError(t, s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM messages WHERE account_id = $1`, fx.b.accountID).Scan(&own))
		require.Equal(t, own, sum, "B's stats count B's messages only: %v", r.GetTotals())
		for _, bk := range r.GetBuckets() {
			require.Equal(t, fx.b.providerID, bk.GetProviderId())
		}
	}
	empty := func(t *testing.T, resp proto.Message) {
		// Only zero values: nothing listed, no page token.
		require.Equal(t, "{}", answerText(resp, nil))
	}
	statsWindow := func(r *v1.GetStatsRequest) *v1.GetStatsRequest {
		r.Start, r.End, r.Bucket = timestamppb.New(time.Now().Add(-time.Hour)), timestamppb.New(time.Now().Add(time.Hour)), durationpb.New(time.Hour)
		return r
	}

	return map[string][]isoCase{
		v1.SendService_SendEmail_FullMethodName: {
			{name: "A's template", want: codes.NotFound,
				call: rpc(s.send.SendEmail, withTemplate(fx.templateID)), target: fx.templateID,
				controlCall: rpc(s.send.SendEmail, withTemplate(missingID)), control: missingID},
			{name: "A's provider_id", want: codes.FailedPrecondition,
				call: rpc(s.send.SendEmail, withProvider(fx.a.providerID)), target: fx.a.providerID,
				controlCall: rpc(s.send.SendEmail, withProvider(missingID)), control: missingID},
			{name: "A's sandbox provider_id", want: codes.FailedPrecondition,
				call: rpc(s.send.SendEmail, withProvider(fx.sandboxProviderID)), target: fx.sandboxProviderID,
				controlCall: rpc(s.send.SendEmail, withProvider(missingID)), control: missingID},
			{name: "from A's verified sender", want: codes.FailedPrecondition,
				call: rpc(s.send.SendEmail, sendFrom(fx.verifiedSender)), target: fx.verifiedSender,
				controlCall: rpc(s.send.SendEmail, sendFrom("nobody-"+fx.tag+"@a-only.example")), control: "nobody-" + fx.tag + "@a-only.example"},
			{name: "A's idempotency key is B's own", want: codes.OK, call: rpc(s.send.SendEmail, idem),
				check: func(t *testing.T, resp proto.Message) {
					r := resp.(*v1.SendEmailResponse)
					require.False(t, r.GetIdempotentReplay(), "B's request is not a replay of A's")
					require.NotContains(t, fx.messageIDs, r.GetMessageId())
				}},
		},
		v1.SendService_SendBatch_FullMethodName: {
			{name: "A's template", want: codes.OK,
				call: rpc(s.send.SendBatch, batch(withTemplate(fx.templateID))), target: fx.templateID,
				controlCall: rpc(s.send.SendBatch, batch(withTemplate(missingID))), control: missingID,
				check: rejected(codes.NotFound)},
			{name: "A's provider_id", want: codes.OK,
				call: rpc(s.send.SendBatch, batch(withProvider(fx.a.providerID))), target: fx.a.providerID,
				controlCall: rpc(s.send.SendBatch, batch(withProvider(missingID))), control: missingID,
				check: rejected(codes.FailedPrecondition)},
			{name: "from A's verified sender", want: codes.OK,
				call: rpc(s.send.SendBatch, batch(sendFrom(fx.verifiedSender))), target: fx.verifiedSender,
				controlCall: rpc(s.send.SendBatch, batch(sendFrom("nobody-"+fx.tag+"@a-only.example"))), control: "nobody-" + fx.tag + "@a-only.example",
				check: rejected(codes.FailedPrecondition)},
		},
		v1.SendService_CancelScheduled_FullMethodName: {
			{name: "A's scheduled message", want: codes.NotFound,
				call: rpc(s.send.CancelScheduled, &v1.CancelScheduledRequest{MessageId: fx.scheduledID}), target: fx.scheduledID,
				controlCall: rpc(s.send.CancelScheduled, &v1.CancelScheduledRequest{MessageId: missingV7}), control: missingV7},
			{name: "A's sent message", want: codes.NotFound,
				call: rpc(s.send.CancelScheduled, &v1.CancelScheduledRequest{MessageId: fx.sentID}), target: fx.sentID,
				controlCall: rpc(s.send.CancelScheduled, &v1.CancelScheduledRequest{MessageId: missingV7}), control: missingV7},
		},
		v1.ReportService_GetMessage_FullMethodName: {
			{name: "A's sent message", want: codes.NotFound,
				call: rpc(s.report.GetMessage, &v1.GetMessageRequest{MessageId: fx.sentID}), target: fx.sentID,
				controlCall: rpc(s.report.GetMessage, &v1.GetMessageRequest{MessageId: missingV7}), control: missingV7},
			{name: "A's scheduled message", want: codes.NotFound,
				call: rpc(s.report.GetMessage, &v1.GetMessageRequest{MessageId: fx.scheduledID}), target: fx.scheduledID,
				controlCall: rpc(s.report.GetMessage, &v1.GetMessageRequest{MessageId: missingV7}), control: missingV7},
		},
		v1.ReportService_ListMessages_FullMethodName: {
			{name: "all", want: codes.OK, call: rpc(s.report.ListMessages, &v1.ListMessagesRequest{PageSize: 1000})},
			{name: "A's provider", want: codes.OK, call: rpc(s.report.ListMessages, &v1.ListMessagesRequest{ProviderId: fx.a.providerID}), check: empty},
			{name: "A's recipient", want: codes.OK, call: rpc(s.report.ListMessages, &v1.ListMessagesRequest{Recipient: fx.rcpt}), check: empty},
			{name: "A's tag", want: codes.OK, call: rpc(s.report.ListMessages, &v1.ListMessagesRequest{Tags: map[string]string{"campaign": fx.tagValue}}), check: empty},
			{name: "A's page token", want: codes.OK, call: rpc(s.report.ListMessages, &v1.ListMessagesRequest{PageToken: fx.msgToken})},
		},
		v1.ReportService_GetStats_FullMethodName: {
			{name: "all", want: codes.OK, call: rpc(s.report.GetStats, statsWindow(&v1.GetStatsRequest{})), check: bStats},
			{name: "default window", want: codes.OK, call: rpc(s.report.GetStats, &v1.GetStatsRequest{}), check: bStats},
			{name: "A's provider", want: codes.OK, call: rpc(s.report.GetStats, statsWindow(&v1.GetStatsRequest{ProviderId: fx.a.providerID})), check: empty},
		},
		v1.ReportService_WatchEvents_FullMethodName: {
			{name: "everything retained", want: codes.OK, call: watchAll(s, &v1.WatchEventsRequest{FromStart: true})},
			{name: "A's messages", want: codes.OK, call: watchAll(s, &v1.WatchEventsRequest{FromStart: true, MessageIds: []string{fx.sentID, fx.scheduledID}})},
			{name: "A's tag", want: codes.OK, call: watchAll(s, &v1.WatchEventsRequest{FromStart: true, Tags: map[string]string{"campaign": fx.tagValue}})},
		},
		v1.TemplateService_CreateTemplate_FullMethodName: {
			{name: "B's own template under A's alias", want: codes.OK, target: fx.templateAlias,
				call: rpc(s.templates.CreateTemplate, &v1.CreateTemplateRequest{Alias: fx.templateAlias, Name: "B's", Content: tplContent}),
				check: func(t *testing.T, resp proto.Message) {
					require.NotEqual(t, fx.templateID, resp.(*v1.CreateTemplateResponse).GetTemplate().GetId())
				}},
		},
		v1.TemplateService_GetTemplate_FullMethodName: {
			notFound("A's template", func(ref string) callFunc {
				return rpc(s.templates.GetTemplate, &v1.GetTemplateRequest{Template: ref})
			}),
			{name: "A's alias is B's own template", want: codes.OK, target: fx.templateAlias,
				call: rpc(s.templates.GetTemplate, &v1.GetTemplateRequest{Template: fx.templateAlias}),
				check: func(t *testing.T, resp proto.Message) {
					require.NotEqual(t, fx.templateID, resp.(*v1.GetTemplateResponse).GetTemplate().GetId())
				}},
		},
		v1.TemplateService_ListTemplates_FullMethodName: {
			{name: "all", want: codes.OK, call: rpc(s.templates.ListTemplates, &v1.ListTemplatesRequest{PageSize: 100}),
				check: noneOf("A's templates", fx.templateID, fx.templateSubject)},
		},
		v1.TemplateService_ListTemplateVersions_FullMethodName: {
			notFound("A's template", func(ref string) callFunc {
				return rpc(s.templates.ListTemplateVersions, &v1.ListTemplateVersionsRequest{Template: ref})
			}),
		},
		v1.TemplateService_UpdateTemplate_FullMethodName: {
			notFound("A's template", func(ref string) callFunc {
				return rpc(s.templates.UpdateTemplate, &v1.UpdateTemplateRequest{Template: ref, Content: tplContent})
			}),
		},
		v1.TemplateService_PublishTemplate_FullMethodName: {
			notFound("A's template", func(ref string) callFunc {
				return rpc(s.templates.PublishTemplate, &v1.PublishTemplateRequest{Template: ref, Version: 1})
			}),
		},
		v1.TemplateService_DeleteTemplate_FullMethodName: {
			notFound("A's template", func(ref string) callFunc {
				return rpc(s.templates.DeleteTemplate, &v1.DeleteTemplateRequest{Template: ref})
			}),
		},
		v1.TemplateService_RenderTemplate_FullMethodName: {
			notFound("A's template", func(ref string) callFunc {
				return rpc(s.templates.RenderTemplate, &v1.RenderTemplateRequest{Template: ref})
			}),
		},
		v1.TemplateService_SendTestTemplate_FullMethodName: {
			notFound("A's template to B's own address", func(ref string) callFunc {
				return rpc(s.templates.SendTestTemplate, &v1.SendTestTemplateRequest{Template: ref, To: "b-tests@example.com"})
			}),
		},
		v1.WebhookService_CreateWebhook_FullMethodName: {
			{name: "B's new webhook is B's", want: codes.OK,
				call: rpc(s.webhooks.CreateWebhook, &v1.CreateWebhookRequest{Url: "https://b.example/hook"}),
				check: func(t *testing.T, resp proto.Message) {
					require.NotEqual(t, fx.webhookID, resp.(*v1.CreateWebhookResponse).GetWebhook().GetId())
				}},
		},
		v1.WebhookService_ListWebhooks_FullMethodName: {
			{name: "all", want: codes.OK, call: rpc(s.webhooks.ListWebhooks, &v1.ListWebhooksRequest{}), check: noneOf("A's webhooks", fx.webhookID, fx.webhookURL)},
		},
		v1.WebhookService_UpdateWebhook_FullMethodName: {
			{name: "A's webhook to B's URL", want: codes.NotFound,
				call: rpc(s.webhooks.UpdateWebhook, &v1.UpdateWebhookRequest{Id: fx.webhookID, Url: proto.String("https://b.example/stolen")}), target: fx.webhookID,
				controlCall: rpc(s.webhooks.UpdateWebhook, &v1.UpdateWebhookRequest{Id: missingID, Url: proto.String("https://b.example/stolen")}), control: missingID},
		},
		v1.WebhookService_DeleteWebhook_FullMethodName: {
			{name: "A's webhook", want: codes.NotFound,
				call: rpc(s.webhooks.DeleteWebhook, &v1.DeleteWebhookRequest{Id: fx.webhookID}), target: fx.webhookID,
				controlCall: rpc(s.webhooks.DeleteWebhook, &v1.DeleteWebhookRequest{Id: missingID}), control: missingID},
		},
		v1.WebhookService_RotateWebhookSecret_FullMethodName: {
			{name: "A's webhook", want: codes.NotFound,
				call: rpc(s.webhooks.RotateWebhookSecret, &v1.RotateWebhookSecretRequest{Id: fx.webhookID}), target: fx.webhookID,
				controlCall: rpc(s.webhooks.RotateWebhookSecret, &v1.RotateWebhookSecretRequest{Id: missingID}), control: missingID},
		},
		v1.WebhookService_SendTestWebhook_FullMethodName: {
			{name: "A's webhook", want: codes.NotFound,
				call: rpc(s.webhooks.SendTestWebhook, &v1.SendTestWebhookRequest{Id: fx.webhookID}), target: fx.webhookID,
				controlCall: rpc(s.webhooks.SendTestWebhook, &v1.SendTestWebhookRequest{Id: missingID}), control: missingID},
		},
		v1.WebhookService_ListWebhookDeliveries_FullMethodName: {
			{name: "A's webhook", want: codes.NotFound,
				call: rpc(s.webhooks.ListWebhookDeliveries, &v1.ListWebhookDeliveriesRequest{WebhookId: fx.webhookID}), target: fx.webhookID,
				controlCall: rpc(s.webhooks.ListWebhookDeliveries, &v1.ListWebhookDeliveriesRequest{WebhookId: missingID}), control: missingID},
		},
		v1.WebhookService_ReplayWebhookDeliveries_FullMethodName: {
			{name: "A's webhook, a time range", want: codes.NotFound,
				call: rpc(s.webhooks.ReplayWebhookDeliveries, &v1.ReplayWebhookDeliveriesRequest{WebhookId: fx.webhookID,
					Start: timestamppb.New(time.Now().Add(-time.Hour)), End: timestamppb.New(time.Now().Add(time.Hour))}), target: fx.webhookID,
				controlCall: rpc(s.webhooks.ReplayWebhookDeliveries, &v1.ReplayWebhookDeliveriesRequest{WebhookId: missingID,
					Start: timestamppb.New(time.Now().Add(-time.Hour)), End: timestamppb.New(time.Now().Add(time.Hour))}), control: missingID},
		},
		v1.AccountService_CreateApiKey_FullMethodName: {
			{name: "B's new key is B's", want: codes.OK,
				call: rpc(s.account.CreateApiKey, &v1.CreateApiKeyRequest{Name: "b-key", Scopes: []string{auth.ScopeAdmin}}),
				check: func(t *testing.T, resp proto.Message) {
					k := resp.(*v1.CreateApiKeyResponse)
					require.NotContains(t, fx.keyIDs, k.GetKey().GetId())
					_, err := s.report.GetMessage(withKey(t, k.GetSecret()), &v1.GetMessageRequest{MessageId: fx.sentID})
					require.Equal(t, codes.NotFound, status.Code(err), "B's new key reads A's message: %v", err)
				}},
		},
		v1.AccountService_ListApiKeys_FullMethodName: {
			{name: "all", want: codes.OK, call: rpc(s.account.ListApiKeys, &v1.ListApiKeysRequest{}), check: noneOf("A's keys", fx.keyIDs...)},
		},
		v1.AccountService_RevokeApiKey_FullMethodName: {
			{name: "A's extra key", want: codes.NotFound,
				call: rpc(s.account.RevokeApiKey, &v1.RevokeApiKeyRequest{Id: fx.extraKeyID}), target: fx.extraKeyID,
				controlCall: rpc(s.account.RevokeApiKey, &v1.RevokeApiKeyRequest{Id: missingID}), control: missingID},
			{name: "A's bootstrap key", want: codes.NotFound,
				call: rpc(s.account.RevokeApiKey, &v1.RevokeApiKeyRequest{Id: fx.a.keyID}), target: fx.a.keyID,
				controlCall: rpc(s.account.RevokeApiKey, &v1.RevokeApiKeyRequest{Id: missingID}), control: missingID},
		},
		v1.AccountService_PutProvider_FullMethodName: {
			{name: "replace A's sandbox provider", want: codes.NotFound,
				call:   rpc(s.account.PutProvider, &v1.PutProviderRequest{Id: fx.sandboxProviderID, Name: "taken-over", Settings: sandbox}),
				target: fx.sandboxProviderID, control: missingID,
				controlCall: rpc(s.account.PutProvider, &v1.PutProviderRequest{Id: missingID, Name: "taken-over", Settings: sandbox})},
			{name: "replace A's smtp provider keeping its password", want: codes.NotFound,
				call: rpc(s.account.PutProvider, &v1.PutProviderRequest{Id: fx.a.providerID, Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
					Host: "evil.example", Port: 25, TlsMode: "none"}}}),
				target: fx.a.providerID, control: missingID,
				controlCall: rpc(s.account.PutProvider, &v1.PutProviderRequest{Id: missingID, Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
					Host: "evil.example", Port: 25, TlsMode: "none"}}})},
			// A reference to another configuration: its documented error is the field's.
			{name: "A's provider as fallback", want: codes.InvalidArgument,
				call:   rpc(s.account.PutProvider, &v1.PutProviderRequest{Name: "fb", Settings: sandbox, FallbackProviderId: fx.a.providerID}),
				target: fx.a.providerID, control: missingID,
				controlCall: rpc(s.account.PutProvider, &v1.PutProviderRequest{Name: "fb", Settings: sandbox, FallbackProviderId: missingID})},
		},
		v1.AccountService_ListProviders_FullMethodName: {
			{name: "all", want: codes.OK, call: rpc(s.account.ListProviders, &v1.ListProvidersRequest{}),
				check: noneOf("A's providers", fx.a.providerID, fx.sandboxProviderID)},
		},
		v1.AccountService_DeleteProvider_FullMethodName: {
			{name: "A's sandbox provider", want: codes.NotFound,
				call: rpc(s.account.DeleteProvider, &v1.DeleteProviderRequest{Id: fx.sandboxProviderID}), target: fx.sandboxProviderID,
				controlCall: rpc(s.account.DeleteProvider, &v1.DeleteProviderRequest{Id: missingID}), control: missingID},
			{name: "A's default provider", want: codes.NotFound,
				call: rpc(s.account.DeleteProvider, &v1.DeleteProviderRequest{Id: fx.a.providerID}), target: fx.a.providerID,
				controlCall: rpc(s.account.DeleteProvider, &v1.DeleteProviderRequest{Id: missingID}), control: missingID},
		},
		v1.AccountService_VerifyProvider_FullMethodName: {
			{name: "A's smtp provider", want: codes.NotFound,
				call: rpc(s.account.VerifyProvider, &v1.VerifyProviderRequest{Id: fx.a.providerID}), target: fx.a.providerID,
				controlCall: rpc(s.account.VerifyProvider, &v1.VerifyProviderRequest{Id: missingID}), control: missingID},
		},
		v1.AccountService_ResumeProvider_FullMethodName: {
			{name: "A's smtp provider", want: codes.NotFound,
				call: rpc(s.account.ResumeProvider, &v1.ResumeProviderRequest{Id: fx.a.providerID}), target: fx.a.providerID,
				controlCall: rpc(s.account.ResumeProvider, &v1.ResumeProviderRequest{Id: missingID}), control: missingID},
		},
		v1.AccountService_AddSender_FullMethodName: {
			// A reference to a provider: its documented error is FAILED_PRECONDITION.
			{name: "through A's provider", want: codes.FailedPrecondition,
				call:   rpc(s.account.AddSender, &v1.AddSenderRequest{Address: "b-" + fx.tag + "@example.net", ProviderId: fx.a.providerID}),
				target: fx.a.providerID, control: missingID,
				controlCall: rpc(s.account.AddSender, &v1.AddSenderRequest{Address: "b-" + fx.tag + "@example.net", ProviderId: missingID})},
			{name: "an address A has too is B's own", want: codes.OK,
				call: rpc(s.account.AddSender, &v1.AddSenderRequest{Address: fx.sharedSender}),
				check: func(t *testing.T, resp proto.Message) {
					require.NotContains(t, fx.senderIDs, resp.(*v1.AddSenderResponse).GetSender().GetId())
				}},
		},
		v1.AccountService_VerifySender_FullMethodName: {
			{name: "A's pending sender with its right code", want: codes.NotFound,
				call: rpc(s.account.VerifySender, &v1.VerifySenderRequest{Id: fx.pendingSenderID, Code: fx.pendingCode}), target: fx.pendingSenderID,
				controlCall: rpc(s.account.VerifySender, &v1.VerifySenderRequest{Id: missingID, Code: fx.pendingCode}), control: missingID},
			{name: "A's pending sender with a wrong code", want: codes.NotFound,
				call: rpc(s.account.VerifySender, &v1.VerifySenderRequest{Id: fx.pendingSenderID, Code: "00000000"}), target: fx.pendingSenderID,
				controlCall: rpc(s.account.VerifySender, &v1.VerifySenderRequest{Id: missingID, Code: "00000000"}), control: missingID},
		},
		v1.AccountService_ListSenders_FullMethodName: {
			{name: "all", want: codes.OK, call: rpc(s.account.ListSenders, &v1.ListSendersRequest{}), check: noneOf("A's senders", fx.senderIDs...)},
		},
		v1.AccountService_RemoveSender_FullMethodName: {
			{name: "A's verified sender", want: codes.NotFound,
				call: rpc(s.account.RemoveSender, &v1.RemoveSenderRequest{Id: fx.verifiedSenderID}), target: fx.verifiedSenderID,
				controlCall: rpc(s.account.RemoveSender, &v1.RemoveSenderRequest{Id: missingID}), control: missingID},
		},
		// A's verified bounce domain: B has none to read or remove, may claim
		// it (pending, with a token of its own, learning nothing of A), and
		// cannot verify it: the DNS holds A's record, not B's.
		v1.AccountService_GetBounceDomain_FullMethodName: {
			{name: "B has none, whatever A has", want: codes.NotFound, call: rpc(s.account.GetBounceDomain, &v1.GetBounceDomainRequest{})},
		},
		v1.AccountService_RemoveBounceDomain_FullMethodName: {
			{name: "B has none to remove; A's stays", want: codes.NotFound, call: rpc(s.account.RemoveBounceDomain, &v1.RemoveBounceDomainRequest{})},
		},
		v1.AccountService_SetBounceDomain_FullMethodName: {
			{name: "A's verified domain is only B's pending claim", want: codes.OK,
				call: rpc(s.account.SetBounceDomain, &v1.SetBounceDomainRequest{Domain: fx.bounceDomain}),
				check: func(t *testing.T, resp proto.Message) {
					bd := resp.(*v1.SetBounceDomainResponse).GetBounceDomain()
					require.Equal(t, "pending", bd.GetStatus())
					require.NotEqual(t, fx.bounceRecord, bd.GetVerificationRecordValue())
				}},
		},
		v1.AccountService_VerifyBounceDomain_FullMethodName: {
			{name: "B's claim of A's domain, A's record in DNS", want: codes.FailedPrecondition,
				call: rpc(s.account.VerifyBounceDomain, &v1.VerifyBounceDomainRequest{})},
		},
		v1.AccountService_AddSuppression_FullMethodName: {
			{name: "an address A suppresses too is B's own", want: codes.OK,
				call: rpc(s.account.AddSuppression, &v1.AddSuppressionRequest{Address: fx.sharedSuppression, Reason: "complaint"})},
		},
		v1.AccountService_ListSuppressions_FullMethodName: {
			{name: "all", want: codes.OK, call: rpc(s.account.ListSuppressions, &v1.ListSuppressionsRequest{PageSize: 1000})},
			{name: "A's page token", want: codes.OK, call: rpc(s.account.ListSuppressions, &v1.ListSuppressionsRequest{PageToken: fx.suppressionToken})},
		},
		v1.AccountService_RemoveSuppression_FullMethodName: {
			{name: "A's suppression", want: codes.NotFound,
				call: rpc(s.account.RemoveSuppression, &v1.RemoveSuppressionRequest{Address: fx.suppressed}), target: fx.suppressed,
				controlCall: rpc(s.account.RemoveSuppression, &v1.RemoveSuppressionRequest{Address: "nobody-" + fx.tag + "@example.org"}),
				control:     "nobody-" + fx.tag + "@example.org"},
		},
		v1.AccountService_ListUsage_FullMethodName: {
			{name: "all", want: codes.OK, call: rpc(s.account.ListUsage, &v1.ListUsageRequest{PageSize: 1000}), check: noneOf("A's keys", fx.keyIDs...)},
			{name: "A's key", want: codes.OK, call: rpc(s.account.ListUsage, &v1.ListUsageRequest{KeyId: fx.a.keyID}), check: empty},
			{name: "A's page token", want: codes.OK, call: rpc(s.account.ListUsage, &v1.ListUsageRequest{PageToken: fx.usageTok}), check: noneOf("A's keys", fx.keyIDs...)},
		},
		v1.AccountService_DeleteAccountData_FullMethodName: {
			{name: "confirm A's account", want: codes.PermissionDenied,
				call: rpc(s.account.DeleteAccountData, &v1.DeleteAccountDataRequest{ConfirmAccountId: fx.a.accountID}), target: fx.a.accountID,
				controlCall: rpc(s.account.DeleteAccountData, &v1.DeleteAccountDataRequest{ConfirmAccountId: missingID}), control: missingID},
		},
	}
}

// withKey is a call context authenticated with key.
func withKey(t *testing.T, key string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

// httpRaw makes an HTTP/JSON call and returns the status code and the body.
func httpRaw(t *testing.T, method, url, key string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	require.NoError(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

// requireNoMarkers fails when txt holds any of markers (after removing the
// identifiers the caller itself sent).
func requireNoMarkers(t *testing.T, txt string, markers []string, own ...string) {
	t.Helper()
	for _, o := range own {
		if o != "" {
			txt = strings.ReplaceAll(txt, o, "<own>")
		}
	}
	for _, m := range markers {
		require.NotContains(t, txt, m, "an answer to B holds A's %q", m)
	}
}

// TestIsolationMatrix: for every RPC of the API, account B going after account
// A's data (A's message, key, provider, sender, suppression, account id, page
// tokens, idempotency key) gets NOT_FOUND or PERMISSION_DENIED (or the
// documented error of a field that refers to a resource, the same as for one
// that exists nowhere), lists and stats hold nothing of A, and A's state is
// the same before and after. The rows are checked against the service
// descriptors: an RPC without a row fails the test.
func TestIsolationMatrix(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{http: true, dns: true})
	fx := setupIsolation(t, s)
	cases := isolationCases(t, s, fx)

	methods := apiMethods(t)
	for _, m := range methods {
		if len(cases[m]) == 0 {
			t.Errorf("%s has no isolation row: add one to isolationCases", m)
		}
	}
	for m := range cases {
		require.Contains(t, methods, m, "isolation row for an RPC that does not exist")
	}
	if t.Failed() {
		return
	}

	before := snapshotAccount(t, s, fx.a.accountID, nil)
	ctxB := s.ctx("b")
	rows := 0
	for _, m := range methods {
		for _, c := range cases[m] {
			rows++
			t.Run(m[strings.LastIndex(m, ".")+1:]+"/"+c.name, func(t *testing.T) {
				resp, err := c.call(ctxB)
				txt := answerText(resp, err)
				requireNoMarkers(t, txt, fx.markers, c.target)
				require.Equal(t, c.want, status.Code(err), "answer: %s", txt)
				if c.want != codes.OK {
					require.Contains(t, []codes.Code{codes.NotFound, codes.PermissionDenied, codes.FailedPrecondition, codes.InvalidArgument}, c.want)
				}
				if c.controlCall != nil {
					cresp, cerr := c.controlCall(ctxB)
					require.Equal(t, status.Code(cerr), status.Code(err), "control answer: %s", answerText(cresp, cerr))
					require.Equal(t, strings.ReplaceAll(answerText(cresp, cerr), c.control, "<id>"), strings.ReplaceAll(txt, c.target, "<id>"),
						"B can tell A's %s from one that exists nowhere", c.target)
				}
				if c.check != nil && err == nil {
					c.check(t, resp)
				}
			})
		}
	}

	t.Run("HTTP", func(t *testing.T) {
		missing := uuid.NewString()
		for _, c := range []struct {
			name, method, url, target, control string
			body                               any
		}{
			{"GetMessage", "GET", s.reportURL + "/v1/messages/", fx.sentID, uuid.Must(uuid.NewV7()).String(), nil},
			{"RevokeApiKey", "POST", s.ingestURL + "/v1/apiKeys/%s:revoke", fx.extraKeyID, missing, map[string]any{}},
			{"DeleteProvider", "DELETE", s.ingestURL + "/v1/providers/", fx.sandboxProviderID, missing, nil},
		} {
			t.Run(c.name, func(t *testing.T) {
				url := func(id string) string {
					if strings.Contains(c.url, "%s") {
						return fmt.Sprintf(c.url, id)
					}
					return c.url + id
				}
				code, body := httpRaw(t, c.method, url(c.target), fx.b.key, c.body)
				requireNoMarkers(t, string(body), fx.markers, c.target)
				require.Equal(t, 404, code, "%s", body)
				ccode, cbody := httpRaw(t, c.method, url(c.control), fx.b.key, c.body)
				require.Equal(t, ccode, code)
				require.Equal(t, strings.ReplaceAll(string(cbody), c.control, "<id>"), strings.ReplaceAll(string(body), c.target, "<id>"))
			})
		}
		for _, u := range []string{s.reportURL + "/v1/messages?pageSize=1000", s.reportURL + "/v1/stats", s.ingestURL + "/v1/apiKeys",
			s.ingestURL + "/v1/providers", s.ingestURL + "/v1/senders", s.ingestURL + "/v1/suppressions", s.ingestURL + "/v1/usage",
			s.ingestURL + "/v1/bounceDomain"} {
			code, body := httpRaw(t, "GET", u, fx.b.key, nil)
			require.Equal(t, 200, code, "%s: %s", u, body)
			requireNoMarkers(t, string(body), fx.markers)
		}
	})

	after := snapshotAccount(t, s, fx.a.accountID, nil)
	require.Equal(t, before, after, "B's calls changed A's state")
	t.Logf("isolation matrix: %d RPCs, %d rows over gRPC, 3 over HTTP/JSON plus 8 HTTP lists", len(methods), rows)

	// And A still has all of it (checked after the snapshot: A's calls are recorded as usage).
	got, err := s.report.GetMessage(withKey(t, fx.extraKeySecret), &v1.GetMessageRequest{MessageId: fx.scheduledID})
	require.NoError(t, err, "A's key still works")
	require.Equal(t, v1.MessageStatus_SCHEDULED, got.GetMessage().GetStatus())
	require.False(t, msgstatus.Final(got.GetMessage().GetStatus()))
	v, err := s.account.VerifySender(s.ctx("a"), &v1.VerifySenderRequest{Id: fx.pendingSenderID, Code: fx.pendingCode})
	require.NoError(t, err, "A's code still verifies A's sender")
	require.Equal(t, "verified", v.GetSender().GetStatus())
}
