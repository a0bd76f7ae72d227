// Module testkit holds the servers and checkers the tests run against: real
// PostgreSQL schemas (pgtest), in-process nats-server (natstest, natsembed),
// independent SMTP servers (mailservers) and the project's SMTP sink
// (smtpsink), the SES emulator (sestest), the Gmail fake checked against
// Google's discovery document (gmailtest), Python's MIME parser (mimecheck),
// a JWT issuer (jwttest), a DNS server (dnstest, miekg/dns), a TCP fault
// relay (tcprelay), gRPC status checks (statustest), a headless Chromium with
// a third-party request guard (browser, chromedp) and an OpenID Connect
// provider (oidcprovider, zitadel/oidc).
//
// It is its own module so that the production modules (pkg, pkg/provider and
// the services) never link a test server: only tests and the dev stack import
// it.
package testkit
