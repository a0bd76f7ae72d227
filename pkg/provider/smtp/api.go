package smtp

import emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"

// FromAPI is the settings and secret that in (the API's SmtpSettings) sets,
// not yet normalized; an empty password keeps stored's.
func FromAPI(in *emailsenderv1.SmtpSettings, stored Secret) (Settings, Secret) {
	s := Settings{Host: in.GetHost(), Port: int(in.GetPort()), TLS: in.GetTlsMode(),
		Username: in.GetUsername(), PoolSize: int(in.GetPoolSize()), HELO: in.GetHelo(),
		BounceIMAPHost: in.GetBounceImapHost(), BounceIMAPPort: int(in.GetBounceImapPort()), BounceIMAPTLS: in.GetBounceImapTls(),
		BounceIMAPUsername: in.GetBounceImapUsername(), BounceIMAPMailbox: in.GetBounceImapMailbox()}
	sec := stored
	if p := in.GetPassword(); p != "" {
		sec.Password = p
	}
	if p := in.GetBounceImapPassword(); p != "" {
		sec.BounceIMAPPassword = p
	}
	if s.BounceIMAPHost == "" {
		// The bounce mailbox turned off: its password goes too.
		sec.BounceIMAPPassword = ""
	}
	return s, sec
}

// API is s as the API shows it: no secret.
func (s Settings) API() *emailsenderv1.SmtpSettings {
	return &emailsenderv1.SmtpSettings{Host: s.Host, Port: int32(s.Port), TlsMode: s.TLS, Username: s.Username,
		PoolSize: int32(s.PoolSize), Helo: s.HELO,
		BounceImapHost: s.BounceIMAPHost, BounceImapPort: int32(s.BounceIMAPPort), BounceImapTls: s.BounceIMAPTLS,
		BounceImapUsername: s.BounceIMAPUsername, BounceImapMailbox: s.BounceIMAPMailbox}
}
