package gmailtest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The mailbox methods the fake serves, by discovery id.
const (
	historyMethod = "gmail.users.history.list"
	getMethod     = "gmail.users.messages.get"
)

// firstHistoryID is the mailbox's historyId before anything happened in it.
const firstHistoryID = 1000

// mailboxEntry is one message of the mailbox: sent through the API (label
// SENT) or received (Receive, label INBOX).
type mailboxEntry struct {
	id, threadID string
	labels       []string
	historyID    uint64
	raw          []byte
	internal     time.Time
}

// historyRecord is one messageAdded change of the mailbox.
type historyRecord struct {
	id    uint64
	entry *mailboxEntry
}

// mailbox is the state behind users.history.list and users.messages.get;
// guarded by Server.mu.
type mailbox struct {
	historyID uint64 // the mailbox's current historyId
	floor     uint64 // the oldest startHistoryId still answered (else 404)
	entries   []*mailboxEntry
	byID      map[string]*mailboxEntry
	history   []historyRecord
	seq       int
}

func newMailbox() mailbox {
	return mailbox{historyID: firstHistoryID, floor: firstHistoryID, byID: map[string]*mailboxEntry{}}
}

// add puts a message in the mailbox as one messageAdded history record. The
// caller holds Server.mu.
func (b *mailbox) add(id, threadID string, raw []byte, labels ...string) *mailboxEntry {
	b.historyID++
	e := &mailboxEntry{id: id, threadID: threadID, labels: labels, historyID: b.historyID, raw: raw, internal: time.Now()}
	b.entries = append(b.entries, e)
	b.byID[id] = e
	b.history = append(b.history, historyRecord{id: b.historyID, entry: e})
	return e
}

// threadOf is the thread a received message joins, as Gmail threads it: the
// thread of a mailbox message its In-Reply-To or References names, else a
// thread of its own ("").
func (b *mailbox) threadOf(raw []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	refs := strings.Fields(m.Header.Get("In-Reply-To") + " " + m.Header.Get("References"))
	for _, e := range b.entries {
		if id := messageIDHeader(e.raw); id != "" && slices.Contains(refs, id) {
			return e.threadID
		}
	}
	return ""
}

// Receive puts raw in the mailbox as mail that arrived (labels INBOX and
// UNREAD), as one messageAdded history record, threaded with the message it
// answers (In-Reply-To, References) like Gmail threads a bounce with the
// message that bounced. It returns the Gmail message id.
func (s *Server) Receive(raw []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.box.seq++
	id := fmt.Sprintf("1a%014x", s.box.seq)
	thread := s.box.threadOf(raw)
	if thread == "" {
		thread = id
	}
	s.box.add(id, thread, raw, "INBOX", "UNREAD")
	return id
}

// HistoryID is the mailbox's current historyId.
func (s *Server) HistoryID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.box.historyID
}

// ExpireHistory forgets the mailbox's history up to now, as Gmail does after
// a week or so: users.history.list with an older startHistoryId answers 404,
// and the current historyId (the profile's) is the oldest valid one.
func (s *Server) ExpireHistory() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.box.floor = s.box.historyID
}

// metadataOnly reports whether the issued tokens carry gmail.metadata, which
// Gmail lets read headers and labels only: format=full and raw answer 403,
// and no snippet is given, even when a broader scope is granted beside it.
func (s *Server) metadataOnly() bool { return slices.Contains(s.scopes, scopeMetadata) }

// notFound answers 404 as Gmail does for an unknown or expired id.
func notFound(w http.ResponseWriter) {
	apiError(w, Failure{Status: http.StatusNotFound, Reason: "notFound", Message: "Requested entity was not found."})
}

// historyPageSize is maxResults' default, and its maximum.
const historyPageSize, historyMaxResults = 100, 500

func (s *Server) historyList(w http.ResponseWriter, r *http.Request, call *Call) {
	q := r.URL.Query()
	// The document says "Required." in words only; Gmail refuses a list
	// without it.
	start, err := strconv.ParseUint(q.Get("startHistoryId"), 10, 64)
	if err != nil {
		apiError(w, Failure{Status: http.StatusBadRequest, Reason: "invalidArgument", Message: "Invalid startHistoryId"})
		return
	}
	limit := historyPageSize
	if v := q.Get("maxResults"); v != "" {
		n, _ := strconv.Atoi(v) // the checker made sure it is a uint32
		limit = min(max(n, 1), historyMaxResults)
	}
	types := q["historyTypes"]
	label := q.Get("labelId")
	from := start
	if tok := q.Get("pageToken"); tok != "" {
		// The page token is where the previous page stopped.
		n, err := strconv.ParseUint(strings.TrimPrefix(tok, "h"), 10, 64)
		if err != nil || !strings.HasPrefix(tok, "h") || n < start {
			apiError(w, Failure{Status: http.StatusBadRequest, Reason: "invalidArgument", Message: "Invalid pageToken"})
			return
		}
		from = n
	}

	s.mu.Lock()
	if start < s.box.floor {
		s.mu.Unlock()
		notFound(w)
		return
	}
	var (
		records []map[string]any
		next    string
	)
	for _, h := range s.box.history {
		if h.id <= from {
			continue
		}
		if len(types) > 0 && !slices.Contains(types, "messageAdded") {
			break // the only kind of change the fake has
		}
		if label != "" && !slices.Contains(h.entry.labels, label) {
			continue
		}
		if len(records) == limit {
			next = "h" + strconv.FormatUint(h.id-1, 10)
			break
		}
		ref := map[string]any{"id": h.entry.id, "threadId": h.entry.threadID}
		added := map[string]any{"id": h.entry.id, "threadId": h.entry.threadID, "labelIds": slices.Clone(h.entry.labels)}
		records = append(records, map[string]any{
			"id":            strconv.FormatUint(h.id, 10),
			"messages":      []any{ref},
			"messagesAdded": []any{map[string]any{"message": added}},
		})
	}
	current := s.box.historyID
	s.mu.Unlock()

	out := map[string]any{"historyId": strconv.FormatUint(current, 10)}
	if len(records) > 0 {
		out["history"] = records
	}
	if next != "" {
		out["nextPageToken"] = next
	}
	s.answer(w, call, out)
}

func (s *Server) messageGet(w http.ResponseWriter, r *http.Request, call *Call) {
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = "full" // the document's default
	}
	if (format == "full" || format == "raw") && s.metadataOnly() {
		apiError(w, Failure{Status: http.StatusForbidden, Reason: "forbidden",
			Message: "Metadata scope doesn't allow format " + strings.ToUpper(format)})
		return
	}
	if format == "full" {
		apiError(w, Failure{Status: http.StatusNotImplemented, Reason: "notImplemented",
			Message: "gmailtest serves messages.get in the formats metadata, minimal and raw"})
		return
	}
	s.mu.Lock()
	e := s.box.byID[call.PathParams["id"]]
	s.mu.Unlock()
	if e == nil {
		notFound(w)
		return
	}
	out := map[string]any{
		"id": e.id, "threadId": e.threadID, "labelIds": slices.Clone(e.labels),
		"historyId":    strconv.FormatUint(e.historyID, 10),
		"internalDate": strconv.FormatInt(e.internal.UnixMilli(), 10),
		"sizeEstimate": len(e.raw),
	}
	switch format {
	case "raw":
		out["raw"] = base64.URLEncoding.EncodeToString(e.raw)
		out["snippet"] = snippet(e.raw)
	case "metadata":
		want := q["metadataHeaders"]
		var headers []map[string]any
		for _, h := range headerFields(e.raw) {
			if len(want) == 0 || slices.ContainsFunc(want, func(n string) bool { return strings.EqualFold(n, h[0]) }) {
				headers = append(headers, map[string]any{"name": h[0], "value": h[1]})
			}
		}
		mt, _, _ := mime.ParseMediaType(headerValue(e.raw, "Content-Type"))
		if mt == "" {
			mt = "text/plain"
		}
		out["payload"] = map[string]any{"partId": "", "mimeType": mt, "filename": "", "headers": headers}
		if !s.metadataOnly() {
			out["snippet"] = snippet(e.raw)
		}
	}
	s.answer(w, call, out)
}

// headerFields are the header fields of raw in order, unfolded, their
// values as written (encoded words are not decoded, as Gmail gives them).
func headerFields(raw []byte) [][2]string {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	var out [][2]string
	for {
		line, err := tp.ReadContinuedLine()
		if line == "" || err != nil {
			return out
		}
		name, value, ok := strings.Cut(line, ":")
		if ok {
			out = append(out, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
		}
	}
}

func headerValue(raw []byte, name string) string {
	for _, h := range headerFields(raw) {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// snippet is the start of the message's first text/plain part with its
// white space collapsed, as Gmail's snippet is (about 200 characters).
func snippet(raw []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	text := firstText(m.Header.Get("Content-Type"), m.Body, 0)
	text = strings.Join(strings.Fields(text), " ")
	if r := []rune(text); len(r) > 200 {
		text = string(r[:200])
	}
	return text
}

func firstText(ct string, body io.Reader, depth int) string {
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		mt = "text/plain"
	}
	switch {
	case mt == "text/plain":
		b, _ := io.ReadAll(io.LimitReader(body, 64<<10))
		return string(b)
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < 5:
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				return ""
			}
			if t := firstText(p.Header.Get("Content-Type"), p, depth+1); t != "" {
				return t
			}
		}
	}
	return ""
}
