package store

import (
	"context"
	"fmt"
	"time"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
)

// terminalStatuses are the statuses after which a message's content is no
// longer needed to deliver it (msgstatus.Terminal).
var terminalStatuses = []int16{
	int16(msgstatus.Sent), int16(msgstatus.Delivered), int16(msgstatus.Bounced), int16(msgstatus.Complained),
	int16(msgstatus.Failed), int16(msgstatus.Canceled), int16(msgstatus.Suppressed),
}

// VerificationTag marks the sender verification mails ingest sends itself
// (tag "emailsender" = this value).
const VerificationTag = "sender-verification"

// PurgeContent clears the content (bodies and attachments: the encoded job) of
// up to limit messages created before cutoff, and of verification mails (which
// hold a code) at any age, that are past delivery: a terminal status and no
// outbox row. Status, recipients, events and the metadata columns (subject,
// from, tags) stay. It returns how many it cleared.
func PurgeContent(ctx context.Context, db DBTX, cutoff time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, `
		UPDATE messages SET content = NULL WHERE id IN (
			SELECT m.id FROM messages m
			WHERE m.content IS NOT NULL AND m.created_at < $1 AND m.status = ANY($2)
			  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id)
			LIMIT $3)`, cutoff, terminalStatuses, limit)
	if err != nil {
		return 0, fmt.Errorf("purge message content: %w", err)
	}
	n := tag.RowsAffected()
	tag, err = db.Exec(ctx, `
		UPDATE messages SET content = NULL WHERE id IN (
			SELECT m.id FROM messages m
			WHERE m.tags @> jsonb_build_object('emailsender', $1::text) AND m.content IS NOT NULL
			  AND m.status = ANY($2)
			  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id)
			LIMIT $3)`, VerificationTag, terminalStatuses, limit)
	if err != nil {
		return n, fmt.Errorf("purge verification mail content: %w", err)
	}
	return n + tag.RowsAffected(), nil
}
