package mailservers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mailpitVersion is the version scripts/tools.sh pins (a binary built with
// `go install` reports "dev" itself).
const mailpitVersion = "v1.33.1"

// Mailpit starts Mailpit (from .bin/, installed by scripts/tools.sh) in three
// processes, one each for Plain, StartTLSRequired and Implicit, and stops
// them when t ends.
//
// Where Mailpit differs from the Mode contract:
//   - Plain requires AUTH (Mailpit has no optional AUTH with a password file);
//     it offers PLAIN, LOGIN and CRAM-MD5, so there is no LoginOnly.
//   - It has no idle timeout to configure (Config.IdleTimeout is unused).
//   - Its API does not keep the envelope sender: Received.EnvelopeFrom is its
//     Return-Path guess, the From address when the reverse-path was <>.
//   - It stores envelope-only recipients by prepending a Bcc header to the
//     message; Raw has that header removed again, so Raw is what arrived plus
//     Mailpit's Received header.
//   - MaxSize is rounded up to whole MiB (its --max-message-size unit).
func Mailpit(t testing.TB, cfg Config) *Server {
	t.Helper()
	if err := install(); err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	bin := filepath.Join(repoRoot(), ".bin", "mailpit")
	dir := t.TempDir()
	authFile := filepath.Join(dir, "auth")
	if err := os.WriteFile(authFile, []byte(cfg.Username+":"+cfg.Password+"\n"), 0o600); err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	mib := (cfg.MaxSize + 1<<20 - 1) >> 20
	modes := []struct {
		mode  Mode
		flags []string
	}{
		{Plain, []string{"--smtp-auth-file", authFile, "--smtp-auth-allow-insecure"}},
		{StartTLSRequired, []string{"--smtp-require-starttls"}},
		{Implicit, []string{"--smtp-require-tls"}},
	}
	ports := freePorts(t, 2*len(modes))
	srv := &Server{Name: "mailpit", Version: mailpitVersion, Host: "127.0.0.1", SMTPUTF8: true, ports: map[Mode]int{}}
	var apis []string
	for i, m := range modes {
		smtpPort, httpPort := ports[2*i], ports[2*i+1]
		args := append([]string{
			"--smtp", fmt.Sprintf("127.0.0.1:%d", smtpPort),
			"--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
			"--database", filepath.Join(dir, string(m.mode)+".db"),
			"--max", "0",
			"--max-message-size", fmt.Sprint(mib),
			"--smtp-tls-cert", cfg.CA.CertFile, "--smtp-tls-key", cfg.CA.KeyFile,
			"--smtp-allowed-recipients", allowedExcept(cfg.RefuseLocalPart),
			"--smtp-disable-rdns",
			"--disable-version-check",
			"--log-file", filepath.Join(dir, string(m.mode)+".log"),
			"--verbose",
		}, m.flags...)
		cmd := exec.Command(bin, args...)
		logf, err := os.Create(filepath.Join(dir, string(m.mode)+".out"))
		if err != nil {
			t.Fatalf("mailpit: %v", err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("mailpit: start: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			_ = logf.Close()
		})
		if err := waitListening([]int{smtpPort, httpPort}, 30*time.Second); err != nil {
			out, _ := os.ReadFile(logf.Name())
			t.Fatalf("mailpit %s: %v\n%s", m.mode, err, out)
		}
		srv.ports[m.mode] = smtpPort
		apis = append(apis, fmt.Sprintf("http://127.0.0.1:%d", httpPort))
	}
	srv.inbox = func(ctx context.Context) ([]Received, error) {
		var all []Received
		for _, api := range apis {
			got, err := mailpitInbox(ctx, api)
			if err != nil {
				return nil, err
			}
			all = append(all, got...)
		}
		return all, nil
	}
	return srv
}

// allowedExcept is a Go regexp (Mailpit's --smtp-allowed-recipients) that
// matches every address whose local part is not local: RE2 has no negative
// look-ahead, so it spells out every way to differ.
func allowedExcept(local string) string {
	local = strings.ToLower(local)
	var alts []string
	for i := range len(local) {
		// Same first i characters, then a different one (or the local part ends).
		alts = append(alts, regexp.QuoteMeta(local[:i])+`[^@`+regexp.QuoteMeta(local[i:i+1])+`][^@]*@`)
		if i > 0 {
			alts = append(alts, regexp.QuoteMeta(local[:i])+`@`)
		}
	}
	// Longer than local with local as its prefix.
	alts = append(alts, regexp.QuoteMeta(local)+`[^@]+@`)
	return `(?i)^(` + strings.Join(alts, "|") + `)`
}

type mailpitAddr struct {
	Address string `json:"Address"`
}

type mailpitSummary struct {
	ID string `json:"ID"`
}

type mailpitMessage struct {
	To         []mailpitAddr `json:"To"`
	Cc         []mailpitAddr `json:"Cc"`
	Bcc        []mailpitAddr `json:"Bcc"`
	ReturnPath string        `json:"ReturnPath"`
}

var mailpitCache sync.Map // api + "/" + id -> Received (messages never change)

func mailpitInbox(ctx context.Context, api string) ([]Received, error) {
	var list struct {
		Messages []mailpitSummary `json:"messages"`
	}
	if err := getJSON(ctx, api+"/api/v1/messages?limit=1000000", &list); err != nil {
		return nil, err
	}
	out := make([]Received, 0, len(list.Messages))
	for _, s := range list.Messages {
		key := api + "/" + s.ID
		if r, ok := mailpitCache.Load(key); ok {
			out = append(out, r.(Received))
			continue
		}
		var m mailpitMessage
		if err := getJSON(ctx, api+"/api/v1/message/"+s.ID, &m); err != nil {
			return nil, err
		}
		raw, err := get(ctx, api+"/api/v1/message/"+s.ID+"/raw")
		if err != nil {
			return nil, err
		}
		r := Received{EnvelopeFrom: m.ReturnPath, Raw: raw}
		for _, l := range [][]mailpitAddr{m.To, m.Cc, m.Bcc} {
			for _, a := range l {
				r.Recipients = append(r.Recipients, a.Address)
			}
		}
		if len(m.Bcc) > 0 && bytes.HasPrefix(raw, []byte("Bcc: ")) {
			// Mailpit's own record of the envelope-only recipients.
			if i := bytes.Index(raw, []byte("\r\n")); i >= 0 {
				r.Raw = raw[i+2:]
			} else if i := bytes.IndexByte(raw, '\n'); i >= 0 {
				r.Raw = raw[i+1:]
			}
		}
		mailpitCache.Store(key, r)
		out = append(out, r)
	}
	return out, nil
}

func get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

func getJSON(ctx context.Context, url string, v any) error {
	b, err := get(ctx, url)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
