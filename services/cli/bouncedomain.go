package cli

import (
	"context"
	"fmt"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// bounceDomain manages the account's own bounce domain: set registers it
// (and prints the TXT record to publish), verify looks the record up now
// (the server refuses while it is not found: exit 2 with what was found),
// get shows it, remove removes it.
func (r *runner) bounceDomain(ctx context.Context, args []string) error {
	cmd, args, err := sub("bounce-domain", args, "get", "set", "verify", "remove")
	if err != nil {
		return err
	}
	fs := r.flagSet("bounce-domain " + cmd)
	want, names := 0, ""
	if cmd == "set" {
		want, names = 1, "DOMAIN"
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
	var d *v1.BounceDomain
	switch cmd {
	case "get":
		d, err = c.GetBounceDomain(ctx)
	case "set":
		d, err = c.SetBounceDomain(ctx, pos[0])
	case "verify":
		d, err = c.VerifyBounceDomain(ctx)
	default:
		if err := c.RemoveBounceDomain(ctx); err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(&v1.RemoveBounceDomainResponse{})
		}
		_, err = fmt.Fprintln(r.out.w, "removed the bounce domain")
		return err
	}
	if err != nil {
		return err
	}
	if r.out.json {
		err = r.out.message(d)
	} else {
		err = r.out.fields(
			"Domain", d.GetDomain(),
			"Status", d.GetStatus(),
			"TXT record", d.GetVerificationRecordName(),
			"TXT value", d.GetVerificationRecordValue(),
			"Created", ts(d.GetCreatedAt()),
			"Verified", ts(d.GetVerifiedAt()),
			"Last check", ts(d.GetCheckedAt()),
			"Found", d.GetLastCheck(),
		)
	}
	return err
}
