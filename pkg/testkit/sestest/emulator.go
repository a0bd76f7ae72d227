// Package sestest gives tests the two SES v2 backends the SES provider is
// checked against:
//
//   - the emulator (aws-ses-v2-local from npm, the version locked in
//     deploy/ses-emulator), a real program that accepts SendEmail and keeps
//     what it received (Emulator.Emails). scripts/ses-emulator.sh installs it;
//     one process is started per test binary and shared by its tests. Without
//     Node.js and npm the tests fail (never skip) and say what to install.
//   - Fake, an in-process SES v2 HTTP server for what the emulator cannot do:
//     GetEmailIdentity, and SendEmail or GetAccount answering with a chosen
//     AWS error (the JSON error shape with X-Amzn-ErrorType and the HTTP
//     status the sesv2 client decodes). It can forward the SendEmail calls it
//     does not fail to the emulator, so one endpoint both accepts and refuses.
//
// SES_EMULATOR_URL, when set, names an emulator already running (for example
// from `scripts/ses-emulator.sh start`) instead of starting one.
package sestest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EmulatorAccount is the GetAccount answer of the emulator this package starts
// (its AWS_SES_ACCOUNT): a production account sending up to 5,000 messages/s.
var EmulatorAccount = map[string]any{
	"DedicatedIpAutoWarmupEnabled": false,
	"Details": map[string]any{
		"AdditionalContactEmailAddresses": []string{},
		"ContactLanguage":                 "EN",
		"MailType":                        "TRANSACTIONAL",
		"ReviewDetails":                   map[string]any{"CaseId": "emulator", "Status": "GRANTED"},
		"UseCaseDescription":              "tests",
		"WebsiteURL":                      "https://example.com",
	},
	"EnforcementStatus":       "HEALTHY",
	"ProductionAccessEnabled": true,
	"SendingEnabled":          true,
	"SendQuota": map[string]any{
		"Max24HourSend":   1000000,
		"MaxSendRate":     5000,
		"SentLast24Hours": 0,
	},
	"SuppressionAttributes": map[string]any{"SuppressedReasons": []string{}},
}

// Emulator is a running aws-ses-v2-local.
type Emulator struct {
	// URL is its endpoint, e.g. http://127.0.0.1:38211: the SES client's
	// BaseEndpoint, and the base of /store.
	URL string
}

var (
	emuOnce sync.Once
	emu     *Emulator
	emuErr  error
)

// StartEmulator returns the emulator of this test binary, starting it on the
// first call. It fails t when the emulator cannot be installed or started.
func StartEmulator(t testing.TB) *Emulator {
	t.Helper()
	emuOnce.Do(func() { emu, emuErr = startEmulator() })
	if emuErr != nil {
		t.Fatalf("sestest: %v", emuErr)
	}
	return emu
}

func startEmulator() (*Emulator, error) {
	if u := os.Getenv("SES_EMULATOR_URL"); u != "" {
		e := &Emulator{URL: strings.TrimRight(u, "/")}
		if err := e.waitUp(context.Background(), 5*time.Second, nil); err != nil {
			return nil, fmt.Errorf("SES_EMULATOR_URL=%s does not answer: %w", u, err)
		}
		return e, nil
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed: the SES tests run the aws-ses-v2-local emulator and need Node.js 20+ and npm (apt-get install nodejs npm)", tool)
		}
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(root, "scripts", "ses-emulator.sh")
	install := exec.Command("bash", script, "install")
	if out, err := install.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bash scripts/ses-emulator.sh install: %v\n%s", err, out)
	}
	account, err := json.Marshal(EmulatorAccount)
	if err != nil {
		return nil, err
	}
	var last error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		e := &Emulator{URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
		logs := &lockedWriter{w: &bytes.Buffer{}}
		exited := make(chan error, 1)
		if err := spawn(func() *exec.Cmd {
			cmd := exec.Command("bash", script, "run", fmt.Sprint(port))
			cmd.Env = append(os.Environ(), "AWS_SES_ACCOUNT="+string(account), "SMTP_TRANSPORT=")
			cmd.Stdout, cmd.Stderr = logs, logs
			return cmd
		}, exited); err != nil {
			return nil, err
		}
		if last = e.waitUp(context.Background(), 30*time.Second, exited); last == nil {
			return e, nil
		}
		last = fmt.Errorf("%w\n%s", last, logs.String())
	}
	return nil, fmt.Errorf("start aws-ses-v2-local: %w", last)
}

// spawn starts the command from a goroutine locked to its OS thread that never
// ends: the process gets SIGKILL when the test binary exits (Pdeathsig fires
// when the thread that started it ends), so no emulator outlives its tests.
func spawn(mk func() *exec.Cmd, exited chan<- error) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread lives as long as the process
		cmd := mk()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
		select {} // keep the thread
	}()
	return <-started
}

func (e *Emulator) waitUp(ctx context.Context, limit time.Duration, exited <-chan error) error {
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+"/health-check", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /health-check: %s", resp.Status)
		}
		select {
		case xerr := <-exited:
			return fmt.Errorf("the emulator exited: %v", xerr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s after %s: %w", e.URL, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Email is one message the emulator received (GET /store). For raw content,
// From, Destination, Subject, Body and Attachments are what it parsed from the
// MIME message (the headers, not the envelope).
type Email struct {
	MessageID   string   `json:"messageId"`
	From        string   `json:"from"`
	ReplyTo     []string `json:"replyTo"`
	Destination struct {
		To  []string `json:"to"`
		Cc  []string `json:"cc"`
		Bcc []string `json:"bcc"`
	} `json:"destination"`
	Subject string `json:"subject"`
	Body    struct {
		Text string `json:"text"`
		HTML string `json:"html"`
	} `json:"body"`
	Attachments []Attachment `json:"attachments"`
	At          float64      `json:"at"`
}

// Attachment is an attachment or inline part of an Email.
type Attachment struct {
	Filename           string `json:"filename"`
	ContentType        string `json:"contentType"`
	ContentDisposition string `json:"contentDisposition"`
	ContentID          string `json:"contentId"`
	CID                string `json:"cid"`
	// Content is base64.
	Content string `json:"content"`
	Size    int    `json:"size"`
}

// Data returns the attachment's decoded content.
func (a Attachment) Data() []byte {
	b, _ := base64.StdEncoding.DecodeString(a.Content)
	return b
}

// Emails returns everything the emulator has received, oldest first. The
// emulator is shared by the tests of a binary: filter by subject or message id.
func (e *Emulator) Emails(t testing.TB) []Email {
	t.Helper()
	out, err := e.ReadEmails(context.Background())
	if err != nil {
		t.Fatalf("sestest: %v", err)
	}
	return out
}

// ReadEmails is Emails returning its error.
func (e *Emulator) ReadEmails(ctx context.Context) ([]Email, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+"/store", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s/store: %w", e.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/store: %s", e.URL, resp.Status)
	}
	var store struct {
		Emails []Email `json:"emails"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&store); err != nil {
		return nil, fmt.Errorf("decode /store: %w", err)
	}
	return store.Emails, nil
}

// Email returns the stored email with the emulator's message id, false when
// there is none.
func (e *Emulator) Email(t testing.TB, messageID string) (Email, bool) {
	t.Helper()
	for _, m := range e.Emails(t) {
		if m.MessageID == messageID {
			return m, true
		}
	}
	return Email{}, false
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// repoRoot is the directory of go.work above the working directory (tests run
// in their package's directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "ses-emulator.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("scripts/ses-emulator.sh not found above the working directory")
		}
		dir = parent
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
