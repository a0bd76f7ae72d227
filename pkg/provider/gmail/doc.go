// Package gmail is the Gmail API provider: a provider.Sender (and
// provider.Verifier) that sends through users.messages.send of an account's
// Gmail or Google Workspace mailbox with the real google.golang.org/api/gmail/v1
// client, authorized by an OAuth 2.0 refresh token (golang.org/x/oauth2).
//
// # Configuration
//
// The settings and secret JSON are this package's Settings and Secret:
// client_id, sender_user ("me" by default: the mailbox that granted the
// refresh token, or an address it may send as); secret client_secret and
// refresh_token. The token endpoint (default Google's
// https://oauth2.googleapis.com/token) and the API endpoint (default the
// library's https://gmail.googleapis.com/) are the operator's, Options.TokenURL
// and Options.APIEndpoint (GMAIL_TOKEN_URL, GMAIL_API_ENDPOINT: emulators and
// tests), not a configuration's; every request dials through the guard
// (pkg/netguard).
//
// # Access tokens
//
// Each configuration (ID, Version) has one client: an oauth2.Config with the
// client id and secret and the token URL, and a token source that redeems the
// refresh token, wrapped in oauth2.ReuseTokenSourceWithExpiry so one access
// token is cached and shared by every concurrent send until shortly before it
// expires (Options.EarlyExpiry). A newer Version of the configuration gets a
// new client. A send waits for the token under its own context; a refresh
// that outlives it goes on and fills the cache for the next send.
//
// When the API answers 401 to a request, the access token that request carried
// is dropped from the cache (only if it is still the cached one, so fifty sends
// refused at once cause one refresh, not fifty), and the send is retried once
// with a freshly refreshed token. A second 401 is a Credentials outcome: the
// worker fails the message and marks the configuration unhealthy.
//
// # The message and its Bcc recipients
//
// The message is pkg/mime's Raw, the same bytes the SMTP provider sends,
// base64url-encoded in Message.raw. The Gmail API has no envelope: it takes the
// recipients from the To, Cc and Bcc headers of the raw message, and removes
// the Bcc header before it delivers the message. So, unlike over SMTP, the raw
// message handed to Gmail carries a Bcc header (mime.Options.BccHeader): it is
// the only way to deliver to bcc recipients, and none of the recipients sees
// it. For the same reason, a recipient the worker left out of the envelope
// (Delivery.Recipients: suppressed addresses) is removed from the To, Cc and
// Bcc headers, else Gmail would deliver to it; the others then see the To/Cc
// lists without it.
//
// Messages larger than Options.UploadThreshold (4 MiB) go through the media
// upload endpoint (uploadType=multipart, message/rfc822) instead of the JSON
// body, as Google advises for large messages; Gmail accepts up to 35 MB.
//
// Gmail sends as the authorized mailbox: a From address that is not that
// mailbox or one of its "Send mail as" aliases is replaced by the mailbox's
// address. Verified senders of an account with a Gmail provider should
// therefore be the mailbox and its aliases.
//
// # Classification
//
//	2xx                                                     Sent; Outcome.MessageID is the Gmail message id
//	429; 403 rateLimitExceeded, userRateLimitExceeded,
//	  dailyLimitExceeded, quotaExceeded                     Transient, RetryAfter from Retry-After (seconds or HTTP date)
//	401 twice (once, then again after one token refresh)    Credentials
//	token endpoint: invalid_grant, invalid_client,
//	  unauthorized_client, other 4xx                        Credentials
//	403 any other reason (insufficientPermissions: the
//	  token lacks gmail.send; forbidden: "Delegation
//	  denied", sender_user is not this mailbox)             Credentials
//	400 and other 4xx (404, 413, ...)                       Permanent
//	408, 5xx; token endpoint 429 or 5xx                     Transient
//	network error before the request was fully written      Transient
//	no answer after the request was fully written           Ambiguous
//
// Any 403 that is not throttling is Credentials, not Permanent: the reasons
// Gmail gives (a token without the gmail.send scope, a sender_user the token
// may not act for, an account or API disabled by its administrator) are about
// the configuration, not the message, and would refuse every message alike;
// marking the configuration unhealthy stops sending through it until someone
// fixes it and verifies it again.
//
// Whether the request was fully written is known from httptrace's
// WroteRequest. Secrets never appear in outcomes: the refresh token and client
// secret travel only in the token request's form body, and errors are built
// from Google's error answers and network errors.
//
// # Verify
//
// Verify redeems the refresh token with a fresh token source (not the cached
// access token, so a revoked refresh token is noticed) and calls
// users.getProfile for sender_user, which sends nothing. users.getProfile needs
// one of the scopes gmail.metadata, gmail.readonly, gmail.compose,
// gmail.modify or https://mail.google.com/; gmail.send alone is not enough.
// A 403 insufficientPermissions therefore means "the credentials work, but add
// gmail.metadata to verify them", and is not treated as bad credentials.
package gmail
