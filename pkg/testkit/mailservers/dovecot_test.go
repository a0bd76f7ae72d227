package mailservers_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/namirasoft/email-sender/pkg/testkit/mailservers"
)

// The private Dovecot greets on its plain port (STARTTLS offered) and on
// its implicit-TLS port with the CA's certificate, and logs the account in.
func TestDovecotStarts(t *testing.T) {
	t.Parallel()
	ca := mailservers.NewCA(t)
	srv := mailservers.Dovecot(t, mailservers.DovecotConfig{CA: ca, Username: "bounces", Password: "s3cret"})
	if !strings.HasPrefix(srv.Version, "2.") {
		t.Errorf("version %q", srv.Version)
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", srv.Host, srv.Port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "* OK") || !strings.Contains(greeting, "STARTTLS") {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	fmt.Fprintf(c, "a LOGIN bounces s3cret\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "a ") {
			if !strings.HasPrefix(line, "a OK") {
				t.Fatalf("login: %q", line)
			}
			break
		}
	}
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("%s:%d", srv.Host, srv.TLSPort),
		&tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if greeting, err := bufio.NewReader(tc).ReadString('\n'); err != nil || !strings.HasPrefix(greeting, "* OK") {
		t.Fatalf("tls greeting %q, %v", greeting, err)
	}
}
