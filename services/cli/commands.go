package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// parseTime reads an RFC 3339 time or a duration: from now forward
// (past=false) or back (past=true).
func parseTime(v string, past bool, now time.Time) (*timestamppb.Timestamp, error) {
	if v == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return timestamppb.New(t), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return nil, fmt.Errorf("%q: want an RFC 3339 time or a duration such as 10m", v)
	}
	if past {
		d = -d
	}
	return timestamppb.New(now.Add(d)), nil
}

// listFlag collects a repeatable flag; each value may hold a comma list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// kvFlag collects repeatable K=V flags.
type kvFlag struct {
	keys, values []string
}

func (f *kvFlag) String() string { return "" }
func (f *kvFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", v)
	}
	f.keys, f.values = append(f.keys, k), append(f.values, val)
	return nil
}

func (f *kvFlag) toMap(m map[string]string) map[string]string {
	if len(f.keys) == 0 {
		return m
	}
	if m == nil {
		m = map[string]string{}
	}
	for i, k := range f.keys {
		m[k] = f.values[i]
	}
	return m
}

// readInput reads a file, or standard input for "-".
func (r *runner) readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(r.env.Stdin)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return b, nil
}

func (r *runner) status(ctx context.Context, args []string) error {
	fs := r.flagSet("status")
	pos, err := r.parse(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.GetMessage(ctx, &v1.GetMessageRequest{MessageId: pos[0]})
	if err != nil {
		return err
	}
	return r.printReport(resp)
}

// printReport prints a message's status, recipients and timeline.
func (r *runner) printReport(resp *v1.GetMessageResponse) error {
	if r.out.json {
		return r.out.message(resp)
	}
	m := resp.GetMessage()
	provider := m.GetProviderId()
	if m.GetProviderKind() != "" {
		provider += " (" + m.GetProviderKind() + ")"
	}
	if err := r.out.fields(
		"Message", m.GetMessageId(),
		"Status", m.GetStatus().String(),
		"From", addr(m.GetFrom()),
		"Subject", m.GetSubject(),
		"Provider", provider,
		"Provider id", m.GetProviderMessageId(),
		"Tags", kvs(m.GetTags()),
		"Created", ts(m.GetCreatedAt()),
		"Send at", ts(m.GetSendAt()),
		"Updated", ts(m.GetUpdatedAt()),
		"Attempts", strconv.Itoa(int(m.GetAttempts())),
		"Last error", m.GetLastError(),
	); err != nil {
		return err
	}
	fmt.Fprintln(r.out.w)
	var rows [][]string
	for _, rc := range resp.GetRecipients() {
		rows = append(rows, []string{addr(rc.GetAddress()), rc.GetKind(), rc.GetStatus().String(), ts(rc.GetUpdatedAt()), oneLine(rc.GetDetail(), 60)})
	}
	if err := r.out.table([]string{"RECIPIENT", "KIND", "STATUS", "UPDATED", "DETAIL"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(r.out.w)
	rows = nil
	for _, e := range resp.GetEvents() {
		detail := e.GetProviderResponse()
		if e.GetDetail() != "" {
			detail = strings.TrimSpace(e.GetDetail() + " " + detail)
		}
		if e.GetErrorClass() != "" {
			detail = "[" + e.GetErrorClass() + "] " + detail
		}
		if e.GetRetryAt() != nil {
			detail += " retry at " + ts(e.GetRetryAt())
		}
		attempt := ""
		if e.GetAttempt() > 0 {
			attempt = strconv.Itoa(int(e.GetAttempt()))
		}
		rows = append(rows, []string{ts(e.GetOccurredAt()), e.GetType(), e.GetStatus().String(), orDash(attempt), oneLine(detail, 80)})
	}
	return r.out.table([]string{"TIME", "EVENT", "STATUS", "ATTEMPT", "DETAIL"}, rows)
}

func (r *runner) list(ctx context.Context, args []string) error {
	fs := r.flagSet("list")
	var statuses listFlag
	var tags kvFlag
	fs.Var(&statuses, "status", "status filter (repeatable or comma separated): QUEUED, SCHEDULED, SENDING, RETRYING, SENT, DELIVERED, BOUNCED, COMPLAINED, FAILED, CANCELED, SUPPRESSED")
	fs.Var(&tags, "tag", "tag filter KEY=VALUE (repeatable; all must match)")
	provider := fs.String("provider", "", "provider configuration id")
	recipient := fs.String("recipient", "", "exact recipient address (to, cc or bcc)")
	subject := fs.String("subject", "", "subject contains this text, case-insensitive (each call reads a bounded number of messages: see --subject-calls)")
	subjectCalls := fs.Int("subject-calls", 10, "with --subject: most ListMessages calls to make (each reads up to 20,000 messages) before printing the token that goes on")
	since := fs.String("since", "", "created at or after: RFC 3339 time or duration ago (24h)")
	until := fs.String("until", "", "created before: RFC 3339 time or duration ago")
	limit := fs.Int("limit", 50, "most messages to list (pages are fetched as needed)")
	pageToken := fs.String("page-token", "", "continue from a previous answer's next_page_token")
	if _, err := r.parse(fs, args, 0, ""); err != nil {
		return err
	}
	req := &v1.ListMessagesRequest{ProviderId: *provider, Recipient: *recipient, SubjectContains: *subject, Tags: tags.toMap(nil), PageToken: *pageToken}
	for _, s := range statuses {
		v, ok := v1.MessageStatus_Value_value[strings.ToUpper(s)]
		if !ok || v == 0 {
			return usageErrorf("--status %q: unknown status", s)
		}
		req.Statuses = append(req.Statuses, v1.MessageStatus_Value(v))
	}
	var err error
	now := time.Now()
	if req.CreatedAfter, err = parseTime(*since, true, now); err != nil {
		return usageErrorf("--since %v", err)
	}
	if req.CreatedBefore, err = parseTime(*until, true, now); err != nil {
		return usageErrorf("--until %v", err)
	}
	if *limit < 1 {
		return usageErrorf("--limit: want at least 1")
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if *subjectCalls < 1 {
		return usageErrorf("--subject-calls: want at least 1")
	}
	all := &v1.ListMessagesResponse{}
	for calls := 0; len(all.Messages) < *limit; calls++ {
		if *subject != "" && calls == *subjectCalls {
			break // a subject search's pages may be short: bounded by calls
		}
		req.PageSize = int32(min(*limit-len(all.Messages), 500))
		page, err := c.ListMessages(ctx, req)
		if err != nil {
			return err
		}
		all.Messages = append(all.Messages, page.GetMessages()...)
		all.NextPageToken = page.GetNextPageToken()
		if all.NextPageToken == "" {
			break
		}
		req.PageToken = all.NextPageToken
	}
	if r.out.json {
		return r.out.message(all)
	}
	var rows [][]string
	for _, m := range all.GetMessages() {
		rows = append(rows, []string{m.GetMessageId(), m.GetStatus().String(), ts(m.GetCreatedAt()), addr(m.GetFrom()),
			strconv.Itoa(int(m.GetRecipientCount())), oneLine(m.GetSubject(), 40), kvs(m.GetTags())})
	}
	if err := r.out.table([]string{"ID", "STATUS", "CREATED", "FROM", "RCPTS", "SUBJECT", "TAGS"}, rows); err != nil {
		return err
	}
	if all.GetNextPageToken() != "" {
		fmt.Fprintf(r.env.Stderr, "more: --page-token %s\n", all.GetNextPageToken())
	}
	return nil
}

func (r *runner) stats(ctx context.Context, args []string) error {
	fs := r.flagSet("stats")
	since := fs.String("since", "", "range start: RFC 3339 time or duration ago (default 24h)")
	until := fs.String("until", "", "range end: RFC 3339 time or duration ago (default now)")
	bucket := fs.Duration("bucket", 0, "bucket width, at least 1m (default 1h)")
	provider := fs.String("provider", "", "provider configuration id")
	if _, err := r.parse(fs, args, 0, ""); err != nil {
		return err
	}
	req := &v1.GetStatsRequest{ProviderId: *provider}
	var err error
	now := time.Now()
	if req.Start, err = parseTime(*since, true, now); err != nil {
		return usageErrorf("--since %v", err)
	}
	if req.End, err = parseTime(*until, true, now); err != nil {
		return usageErrorf("--until %v", err)
	}
	if *bucket > 0 {
		req.Bucket = durationpb.New(*bucket)
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.GetStats(ctx, req)
	if err != nil {
		return err
	}
	if r.out.json {
		return r.out.message(resp)
	}
	if err := r.out.fields("Totals", orDash(counts(resp.GetTotals()))); err != nil {
		return err
	}
	fmt.Fprintln(r.out.w)
	var rows [][]string
	for _, b := range resp.GetBuckets() {
		rows = append(rows, []string{ts(b.GetStart()), b.GetProviderId(), counts(b.GetCounts())})
	}
	return r.out.table([]string{"BUCKET", "PROVIDER", "COUNTS"}, rows)
}

func (r *runner) cancel(ctx context.Context, args []string) error {
	fs := r.flagSet("cancel")
	pos, err := r.parse(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.CancelScheduled(ctx, pos[0])
	if err != nil {
		return err
	}
	if r.out.json {
		return r.out.message(resp)
	}
	return r.out.table([]string{"ID", "STATUS"}, [][]string{{resp.GetMessageId(), resp.GetStatus().String()}})
}

// sub splits "GROUP SUBCOMMAND ..." and checks the subcommand.
func sub(group string, args []string, subs ...string) (string, []string, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, usageErrorf("usage: emailsender %s %s", group, strings.Join(subs, "|"))
	}
	for _, s := range subs {
		if args[0] == s {
			return s, args[1:], nil
		}
	}
	return "", nil, usageErrorf("emailsender %s: unknown subcommand %q: want %s", group, args[0], strings.Join(subs, ", "))
}

func (r *runner) keys(ctx context.Context, args []string) error {
	cmd, args, err := sub("keys", args, "list", "create", "revoke")
	if err != nil {
		return err
	}
	fs := r.flagSet("keys " + cmd)
	var scopes listFlag
	var name, expires *string
	want, names := 0, ""
	switch cmd {
	case "create":
		name = fs.String("name", "", "key name (required)")
		fs.Var(&scopes, "scope", "scope: send, read, admin (repeatable or comma separated; default send,read)")
		expires = fs.String("expires", "", "expiry: RFC 3339 time or duration from now (720h)")
	case "revoke":
		want, names = 1, "ID"
	}
	pos, err := r.parse(fs, args, want, names)
	if err != nil {
		return err
	}
	var req *v1.CreateApiKeyRequest
	if cmd == "create" {
		if *name == "" {
			return usageErrorf("keys create: --name is required")
		}
		req = &v1.CreateApiKeyRequest{Name: *name, Scopes: scopes}
		if req.ExpiresAt, err = parseTime(*expires, false, time.Now()); err != nil {
			return usageErrorf("--expires %v", err)
		}
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	switch cmd {
	case "list":
		resp, err := c.ListAPIKeys(ctx)
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.printKeys(resp.GetKeys()...)
	case "create":
		resp, err := c.CreateAPIKey(ctx, req)
		if err != nil {
			return err
		}
		fmt.Fprintln(r.env.Stderr, "The secret is shown only this once; store it now.")
		if r.out.json {
			return r.out.message(resp)
		}
		if err := r.printKeys(resp.GetKey()); err != nil {
			return err
		}
		_, err = fmt.Fprintf(r.out.w, "\nsecret: %s\n", resp.GetSecret())
		return err
	default:
		resp, err := c.RevokeAPIKey(ctx, pos[0])
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.printKeys(resp.GetKey())
	}
}

// printKeys lists keys by their visible prefix only: the secret is never
// stored, and the prefix is shown masked so that it reads as incomplete.
func (r *runner) printKeys(keys ...*v1.ApiKey) error {
	var rows [][]string
	for _, k := range keys {
		rows = append(rows, []string{k.GetId(), k.GetName(), k.GetPrefix() + "…", strings.Join(k.GetScopes(), ","),
			ts(k.GetCreatedAt()), orDash(ts(k.GetExpiresAt())), orDash(ts(k.GetRevokedAt())), orDash(ts(k.GetLastUsedAt()))})
	}
	return r.out.table([]string{"ID", "NAME", "KEY", "SCOPES", "CREATED", "EXPIRES", "REVOKED", "LAST USED"}, rows)
}

func (r *runner) providers(ctx context.Context, args []string) error {
	cmd, args, err := sub("providers", args, "list", "put", "verify", "delete")
	if err != nil {
		return err
	}
	fs := r.flagSet("providers " + cmd)
	var file *string
	want, names := 0, ""
	switch cmd {
	case "put":
		file = fs.String("file", "", "PutProviderRequest as JSON (the API's JSON form; - for standard input); required")
	case "verify", "delete":
		want, names = 1, "ID"
	}
	pos, err := r.parse(fs, args, want, names)
	if err != nil {
		return err
	}
	var put *v1.PutProviderRequest
	if cmd == "put" {
		if *file == "" {
			return usageErrorf("providers put: --file is required (secrets belong in a file, not in flags)")
		}
		b, err := r.readInput(*file)
		if err != nil {
			return err
		}
		put = &v1.PutProviderRequest{}
		if err := protojson.Unmarshal(b, put); err != nil {
			return usageErrorf("--file %s: %v", *file, err)
		}
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	switch cmd {
	case "list":
		resp, err := c.ListProviders(ctx)
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.printProviders(resp.GetProviders()...)
	case "put":
		resp, err := c.PutProvider(ctx, put)
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.printProviders(resp.GetProvider())
	case "verify":
		resp, err := c.VerifyProvider(ctx, pos[0])
		if err != nil {
			return err
		}
		if r.out.json {
			err = r.out.message(resp)
		} else {
			res := resp.GetResult()
			ok := "FAILED"
			if res.GetOk() {
				ok = "OK"
			}
			err = r.out.fields("Result", ok, "Detail", res.GetDetail(), "Checked", ts(res.GetCheckedAt()))
		}
		if err == nil && !resp.GetResult().GetOk() {
			return &negativeError{msg: "provider " + pos[0] + " failed verification"}
		}
		return err
	default:
		if err := c.DeleteProvider(ctx, pos[0]); err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(&v1.DeleteProviderResponse{})
		}
		_, err = fmt.Fprintf(r.out.w, "deleted provider %s\n", pos[0])
		return err
	}
}

func (r *runner) printProviders(ps ...*v1.Provider) error {
	var rows [][]string
	for _, p := range ps {
		health := "healthy"
		if !p.GetHealthy() {
			health = "unhealthy " + p.GetHealthNote()
		}
		verify := "-"
		if lv := p.GetLastVerify(); lv != nil {
			verify = "failed " + ts(lv.GetCheckedAt())
			if lv.GetOk() {
				verify = "ok " + ts(lv.GetCheckedAt())
			}
		}
		def := ""
		if p.GetIsDefault() {
			def = "yes"
		}
		rows = append(rows, []string{p.GetId(), p.GetName(), p.GetKind(), orDash(def), oneLine(health, 40),
			orDash(strings.Join(p.GetSecretsSet(), ",")), orDash(p.GetFallbackProviderId()), verify})
	}
	return r.out.table([]string{"ID", "NAME", "KIND", "DEFAULT", "HEALTH", "SECRETS SET", "FALLBACK", "LAST VERIFY"}, rows)
}

func (r *runner) senders(ctx context.Context, args []string) error {
	cmd, args, err := sub("senders", args, "list", "add", "verify", "remove")
	if err != nil {
		return err
	}
	fs := r.flagSet("senders " + cmd)
	var provider *string
	want, names := 0, ""
	switch cmd {
	case "add":
		provider = fs.String("provider", "", "provider to mail the code through (default: the account's)")
		want, names = 1, "ADDRESS"
	case "verify":
		want, names = 2, "ID CODE"
	case "remove":
		want, names = 1, "ID"
	}
	pos, err := r.parse(fs, args, want, names)
	if err != nil {
		return err
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var sender *v1.Sender
	switch cmd {
	case "list":
		resp, err := c.ListSenders(ctx)
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.printSenders(resp.GetSenders()...)
	case "add":
		resp, err := c.AddSender(ctx, &v1.AddSenderRequest{Address: pos[0], ProviderId: *provider})
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		sender = resp.GetSender()
	case "verify":
		resp, err := c.VerifySender(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		sender = resp.GetSender()
	default:
		if err := c.RemoveSender(ctx, pos[0]); err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(&v1.RemoveSenderResponse{})
		}
		_, err = fmt.Fprintf(r.out.w, "removed sender %s\n", pos[0])
		return err
	}
	return r.printSenders(sender)
}

func (r *runner) printSenders(ss ...*v1.Sender) error {
	var rows [][]string
	for _, s := range ss {
		kind := "address"
		if s.GetIsDomain() {
			kind = "domain"
		}
		rows = append(rows, []string{s.GetId(), s.GetAddress(), kind, s.GetStatus(), orDash(s.GetMethod()), ts(s.GetCreatedAt()), orDash(ts(s.GetVerifiedAt()))})
	}
	return r.out.table([]string{"ID", "ADDRESS", "KIND", "STATUS", "METHOD", "CREATED", "VERIFIED"}, rows)
}

func (r *runner) suppressions(ctx context.Context, args []string) error {
	cmd, args, err := sub("suppressions", args, "list", "add", "remove")
	if err != nil {
		return err
	}
	fs := r.flagSet("suppressions " + cmd)
	var reason *string
	var limit *int
	var search *string
	want, names := 0, ""
	switch cmd {
	case "list":
		limit = fs.Int("limit", 100, "most suppressions to list")
		search = fs.String("search", "", "only addresses containing this text (any case)")
	case "add":
		reason = fs.String("reason", "manual", "manual, bounce or complaint")
		want, names = 1, "ADDRESS"
	case "remove":
		want, names = 1, "ADDRESS"
	}
	pos, err := r.parse(fs, args, want, names)
	if err != nil {
		return err
	}
	if limit != nil && *limit < 1 {
		return usageErrorf("--limit: want at least 1")
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	switch cmd {
	case "list":
		all := &v1.ListSuppressionsResponse{}
		req := &v1.ListSuppressionsRequest{AddressContains: *search}
		for len(all.Suppressions) < *limit {
			req.PageSize = int32(min(*limit-len(all.Suppressions), 500))
			page, err := c.ListSuppressions(ctx, req)
			if err != nil {
				return err
			}
			all.Suppressions = append(all.Suppressions, page.GetSuppressions()...)
			if all.NextPageToken = page.GetNextPageToken(); all.NextPageToken == "" {
				break
			}
			req.PageToken = all.NextPageToken
		}
		if r.out.json {
			return r.out.message(all)
		}
		return r.printSuppressions(all.GetSuppressions()...)
	case "add":
		resp, err := c.AddSuppression(ctx, &v1.AddSuppressionRequest{Address: pos[0], Reason: *reason})
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.printSuppressions(resp.GetSuppression())
	default:
		if err := c.RemoveSuppression(ctx, pos[0]); err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(&v1.RemoveSuppressionResponse{})
		}
		_, err = fmt.Fprintf(r.out.w, "removed suppression %s\n", pos[0])
		return err
	}
}

func (r *runner) printSuppressions(ss ...*v1.Suppression) error {
	var rows [][]string
	for _, s := range ss {
		rows = append(rows, []string{s.GetAddress(), s.GetReason(), ts(s.GetCreatedAt())})
	}
	return r.out.table([]string{"ADDRESS", "REASON", "CREATED"}, rows)
}
