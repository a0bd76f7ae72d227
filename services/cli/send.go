package cli

import (
	"bytes"
	"context"
	"fmt"
	"mime"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/namirasoft/email-sender/pkg/client"
	"github.com/namirasoft/email-sender/pkg/client/eml"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

type sendFlags struct {
	from, subject, text, textFile, html, htmlFile string
	to, cc, bcc, replyTo, attach                  listFlag
	headers, tags                                 kvFlag
	sendAt, provider, idempotencyKey              string
	file, eml                                     string
	wait                                          bool
	waitTimeout                                   time.Duration
}

func (r *runner) send(ctx context.Context, args []string) error {
	fs := r.flagSet("send")
	var f sendFlags
	fs.StringVar(&f.from, "from", "", `sender: "addr@example.com" or "Name <addr@example.com>"`)
	fs.Var(&f.to, "to", "recipient (repeatable or comma separated)")
	fs.Var(&f.cc, "cc", "copy recipient (repeatable or comma separated)")
	fs.Var(&f.bcc, "bcc", "blind copy recipient (repeatable or comma separated)")
	fs.Var(&f.replyTo, "reply-to", "Reply-To address (repeatable)")
	fs.StringVar(&f.subject, "subject", "", "subject")
	fs.StringVar(&f.text, "text", "", "plain text body")
	fs.StringVar(&f.textFile, "text-file", "", "plain text body from a file (- for standard input)")
	fs.StringVar(&f.html, "html", "", "HTML body")
	fs.StringVar(&f.htmlFile, "html-file", "", "HTML body from a file (- for standard input)")
	fs.Var(&f.attach, "attach", "attach a file (repeatable); its type comes from the name or the content")
	fs.Var(&f.headers, "header", "extra header NAME=VALUE (repeatable)")
	fs.Var(&f.tags, "tag", "tag KEY=VALUE (repeatable)")
	fs.StringVar(&f.sendAt, "send-at", "", "deliver not before: RFC 3339 time or duration from now (10m)")
	fs.StringVar(&f.provider, "provider", "", "provider configuration id (default: the account's)")
	fs.StringVar(&f.idempotencyKey, "idempotency-key", "", "idempotency key (default: a random one, reused by the client's retries)")
	fs.StringVar(&f.file, "file", "", "the SendEmailRequest as JSON (the API's JSON form; - for standard input)")
	fs.StringVar(&f.eml, "eml", "", "an RFC 5322 message (.eml): from, to, cc, bcc, reply-to, subject, text, HTML, attachments")
	fs.BoolVar(&f.wait, "wait", false, "wait until the message is SENT or has failed, and print its report (exit 6 when undelivered)")
	fs.DurationVar(&f.waitTimeout, "wait-timeout", 5*time.Minute, "longest --wait")
	if _, err := r.parse(fs, args, 0, ""); err != nil {
		return err
	}
	req, err := r.buildSend(&f, time.Now())
	if err != nil {
		return err
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if !f.wait {
		resp, err := c.Send(ctx, req)
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.out.table([]string{"ID", "STATUS", "REPLAY"}, [][]string{{resp.GetMessageId(), resp.GetStatus().String(), fmt.Sprint(resp.GetIdempotentReplay())}})
	}
	wctx, cancel := context.WithTimeout(ctx, f.waitTimeout)
	defer cancel()
	report, sent, err := c.SendAndWait(wctx, req)
	if err != nil {
		if sent != nil {
			fmt.Fprintf(r.env.Stderr, "accepted as %s (%s)\n", sent.GetMessageId(), sent.GetStatus())
		}
		return err
	}
	if err := r.printReport(report); err != nil {
		return err
	}
	if st := report.GetMessage().GetStatus(); !client.Succeeded(st) {
		return &negativeError{msg: fmt.Sprintf("message %s ended %s", report.GetMessage().GetMessageId(), st)}
	}
	return nil
}

// buildSend makes the request from --file, --eml or the message flags, then
// applies the flags that go with any of them.
func (r *runner) buildSend(f *sendFlags, now time.Time) (*v1.SendEmailRequest, error) {
	contentFlags := f.from != "" || len(f.to)+len(f.cc)+len(f.bcc)+len(f.replyTo) > 0 || f.subject != "" ||
		f.text != "" || f.textFile != "" || f.html != "" || f.htmlFile != ""
	req := &v1.SendEmailRequest{}
	switch {
	case f.file != "" && f.eml != "":
		return nil, usageErrorf("send: --file and --eml exclude each other")
	case (f.file != "" || f.eml != "") && contentFlags:
		return nil, usageErrorf("send: --from, --to, --cc, --bcc, --reply-to, --subject, --text and --html do not go with --file or --eml")
	case f.file != "":
		b, err := r.readInput(f.file)
		if err != nil {
			return nil, err
		}
		if err := protojson.Unmarshal(b, req); err != nil {
			return nil, usageErrorf("--file %s: %v", f.file, err)
		}
	case f.eml != "":
		b, err := r.readInput(f.eml)
		if err != nil {
			return nil, err
		}
		m, _, err := eml.Parse(bytes.NewReader(b))
		if err != nil {
			return nil, usageErrorf("--eml %s: %v", f.eml, err)
		}
		req.Message = m
	default:
		m, err := r.messageFromFlags(f)
		if err != nil {
			return nil, err
		}
		req.Message = m
	}
	if req.Message == nil {
		req.Message = &v1.EmailMessage{}
	}
	m := req.Message
	for _, path := range f.attach {
		a, err := attachment(path)
		if err != nil {
			return nil, err
		}
		m.Attachments = append(m.Attachments, a)
	}
	for i, k := range f.headers.keys {
		m.Headers = append(m.Headers, &v1.Header{Name: k, Value: f.headers.values[i]})
	}
	m.Tags = f.tags.toMap(m.Tags)
	if f.provider != "" {
		req.ProviderId = f.provider
	}
	if f.idempotencyKey != "" {
		req.IdempotencyKey = f.idempotencyKey
	}
	if f.sendAt != "" {
		at, err := parseTime(f.sendAt, false, now)
		if err != nil {
			return nil, usageErrorf("--send-at %v", err)
		}
		req.SendAt = at
	}
	return req, nil
}

func (r *runner) messageFromFlags(f *sendFlags) (*v1.EmailMessage, error) {
	m := &v1.EmailMessage{Subject: f.subject, TextBody: f.text, HtmlBody: f.html}
	if f.from == "" {
		return nil, usageErrorf("send: --from is required (or --file, --eml)")
	}
	from, err := addresses("--from", []string{f.from})
	if err != nil {
		return nil, err
	}
	if len(from) != 1 {
		return nil, usageErrorf("--from: want one address")
	}
	m.From = from[0]
	for _, l := range []struct {
		name string
		in   []string
		out  *[]*v1.Address
	}{{"--to", f.to, &m.To}, {"--cc", f.cc, &m.Cc}, {"--bcc", f.bcc, &m.Bcc}, {"--reply-to", f.replyTo, &m.ReplyTo}} {
		if *l.out, err = addresses(l.name, l.in); err != nil {
			return nil, err
		}
	}
	if len(m.To)+len(m.Cc)+len(m.Bcc) == 0 {
		return nil, usageErrorf("send: give at least one of --to, --cc, --bcc")
	}
	for _, b := range []struct {
		path string
		out  *string
	}{{f.textFile, &m.TextBody}, {f.htmlFile, &m.HtmlBody}} {
		if b.path == "" {
			continue
		}
		data, err := r.readInput(b.path)
		if err != nil {
			return nil, err
		}
		*b.out = string(data)
	}
	if m.TextBody == "" && m.HtmlBody == "" {
		return nil, usageErrorf("send: give a body: --text, --text-file, --html or --html-file")
	}
	return m, nil
}

// addresses parses "addr" and "Name <addr>" values (the flags already split
// comma lists; a quoted name with a comma stays whole through
// mail.ParseAddressList of the rejoined value).
func addresses(flagName string, vals []string) ([]*v1.Address, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	list, err := mail.ParseAddressList(strings.Join(vals, ", "))
	if err != nil {
		return nil, usageErrorf("%s %q: %v", flagName, strings.Join(vals, ", "), err)
	}
	out := make([]*v1.Address, len(list))
	for i, a := range list {
		out[i] = &v1.Address{Address: a.Address, Name: a.Name}
	}
	return out, nil
}

// attachment reads a file into an attachment; the type comes from the
// extension, else from the content.
func attachment(path string) (*v1.Attachment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("--attach: %v", err)
	}
	ct := mime.TypeByExtension(filepath.Ext(path))
	if ct == "" {
		ct = http.DetectContentType(data)
	}
	return &v1.Attachment{Filename: filepath.Base(path), ContentType: ct, Content: data}, nil
}
