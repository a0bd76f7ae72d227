package store

import (
	"context"
	"fmt"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
)

// A message's content (bodies and attachments: the encoded job) is a row of
// message_contents, partitioned like messages (pkg/partition): it goes with
// its partition after RETENTION_PERIOD, while the message's metadata stays
// until METADATA_RETENTION. The outbox relay is its one reader.
const insertContentSQL = `INSERT INTO message_contents (message_id, account_id, content) VALUES ($1, $2, $3)`

// terminalStatuses are the statuses after which a message's content is no
// longer needed to deliver it (msgstatus.Terminal).
var terminalStatuses = []int16{
	int16(msgstatus.Sent), int16(msgstatus.Delivered), int16(msgstatus.Bounced), int16(msgstatus.Complained),
	int16(msgstatus.Failed), int16(msgstatus.Canceled), int16(msgstatus.Suppressed),
}

// VerificationTag marks the sender verification mails ingest sends itself
// (tag "emailsender" = this value).
const VerificationTag = "sender-verification"

// PurgeVerificationContent deletes the content of up to limit sender
// verification mails (which hold a code) that are past delivery: a terminal
// status and no outbox row. It returns how many it deleted. These few rows
// are deleted one by one rather than left to their partition's expiry: the
// code must not outlive its use.
func PurgeVerificationContent(ctx context.Context, db DBTX, limit int) (int64, error) {
	tag, err := db.Exec(ctx, `
		DELETE FROM message_contents c WHERE c.message_id IN (
			SELECT m.id FROM messages m JOIN message_contents mc ON mc.message_id = m.id AND mc.account_id = m.account_id
			WHERE m.tags @> jsonb_build_object('emailsender', $1::text) AND m.status = ANY($2)
			  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id)
			LIMIT $3)`, VerificationTag, terminalStatuses, limit)
	if err != nil {
		return 0, fmt.Errorf("purge verification mail content: %w", err)
	}
	return tag.RowsAffected(), nil
}
