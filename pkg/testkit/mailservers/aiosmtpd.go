package mailservers

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// aiosmtpdScript is the server program, run as /usr/bin/python3 -I -c.
//
//go:embed aiosmtpd_server.py
var aiosmtpdScript string

// aiosmtpdPython is Debian's interpreter, the one that sees python3-aiosmtpd
// (a python3 earlier on PATH, pyenv's say, does not).
const aiosmtpdPython = "/usr/bin/python3"

// aiosmtpdModes are the modes AIOSMTPD listens in, one port each.
var aiosmtpdModes = []Mode{Plain, StartTLSRequired, Implicit, LoginOnly}

// aiosmtpdConfig is the JSON file aiosmtpd_server.py reads.
type aiosmtpdConfig struct {
	CertFile        string       `json:"cert_file"`
	KeyFile         string       `json:"key_file"`
	Username        string       `json:"username"`
	Password        string       `json:"password"`
	MaxSize         int64        `json:"max_size"`
	IdleTimeout     float64      `json:"idle_timeout"`
	RefuseLocalPart string       `json:"refuse_local_part"`
	Inbox           string       `json:"inbox"`
	Ports           map[Mode]int `json:"ports"`
}

// aiosmtpdMeta is the <id>.json aiosmtpd_server.py writes per transaction.
type aiosmtpdMeta struct {
	ID       string   `json:"id"`
	MailFrom string   `json:"mail_from"`
	RcptTos  []string `json:"rcpt_tos"`
}

// AIOSMTPD starts aiosmtpd (Debian's python3-aiosmtpd, run by /usr/bin/python3)
// configured by cfg and stops it when t ends.
//
// One process listens in every Mode (Plain, StartTLSRequired, Implicit,
// LoginOnly), each on its own port of 127.0.0.1, and stores each transaction
// (the raw bytes as received, CRLF kept, and the envelope) in a directory
// under t.TempDir(). It offers SIZE cfg.MaxSize, 8BITMIME, SMTPUTF8 and
// AUTH (PLAIN and LOGIN; LOGIN only on LoginOnly) without TLS too; it closes
// a connection idle for cfg.IdleTimeout without a reply. When t fails, the
// tail of the server's log is logged.
func AIOSMTPD(t testing.TB, cfg Config) *Server {
	t.Helper()
	if err := install(); err != nil {
		t.Fatalf("aiosmtpd: %v", err)
	}
	if cfg.CA == nil || cfg.Username == "" || cfg.Password == "" || cfg.MaxSize <= 0 ||
		cfg.IdleTimeout <= 0 || cfg.RefuseLocalPart == "" {
		t.Fatalf("aiosmtpd: incomplete Config %+v", cfg)
	}

	dir := t.TempDir()
	inbox := filepath.Join(dir, "inbox")
	if err := os.Mkdir(inbox, 0o755); err != nil {
		t.Fatalf("aiosmtpd: %v", err)
	}
	logFile := filepath.Join(dir, "aiosmtpd.log")

	// A port freePorts returned may be taken by someone else before Python
	// binds it: start again on new ports.
	const attempts = 3
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		srv, err := startAIOSMTPD(t, cfg, dir, inbox, logFile, attempt)
		if err == nil {
			return srv
		}
		lastErr = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	t.Fatalf("aiosmtpd: %v\n--- %s (tail) ---\n%s", lastErr, logFile, aiosmtpdTail(logFile, 8<<10))
	return nil
}

// startAIOSMTPD starts one aiosmtpd process and waits until it is ready. On
// success it has registered the cleanup that stops it.
func startAIOSMTPD(t testing.TB, cfg Config, dir, inbox, logFile string, attempt int) (*Server, error) {
	t.Helper()
	ports := freePorts(t, len(aiosmtpdModes))
	pc := aiosmtpdConfig{
		CertFile:        cfg.CA.CertFile,
		KeyFile:         cfg.CA.KeyFile,
		Username:        cfg.Username,
		Password:        cfg.Password,
		MaxSize:         cfg.MaxSize,
		IdleTimeout:     cfg.IdleTimeout.Seconds(),
		RefuseLocalPart: cfg.RefuseLocalPart,
		Inbox:           inbox,
		Ports:           map[Mode]int{},
	}
	for i, m := range aiosmtpdModes {
		pc.Ports[m] = ports[i]
	}
	cfgJSON, err := json.MarshalIndent(pc, "", "  ")
	if err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(dir, fmt.Sprintf("config-%d.json", attempt))
	if err := os.WriteFile(cfgFile, cfgJSON, 0o600); err != nil {
		return nil, err
	}

	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== attempt %d: %s -I -c <aiosmtpd_server.py> %s\n", attempt, aiosmtpdPython, cfgFile)
	start, _ := logf.Seek(0, 2)

	// stdin is a pipe the server watches: should this process die without
	// running the cleanup, the server sees EOF and exits.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(aiosmtpdPython, "-I", "-c", aiosmtpdScript, cfgFile)
	cmd.Dir = dir
	cmd.Stdin = stdinR
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1")
	began := time.Now()
	if err := cmd.Start(); err != nil {
		_ = stdinR.Close()
		_ = stdinW.Close()
		return nil, fmt.Errorf("start %s: %w", aiosmtpdPython, err)
	}
	_ = stdinR.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = stdinW.Close()
	}

	version, err := waitAIOSMTPDReady(logFile, start, done, 30*time.Second)
	if err == nil {
		err = waitListening(ports, 10*time.Second)
	}
	if err != nil {
		select {
		case <-done:
		default:
			stop()
		}
		return nil, err
	}
	t.Logf("aiosmtpd %s ready in %s on 127.0.0.1 (ports %v), log %s",
		version, time.Since(began).Round(time.Millisecond), pc.Ports, logFile)

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("aiosmtpd log %s (tail):\n%s", logFile, aiosmtpdTail(logFile, 8<<10))
		}
		stop()
	})

	return &Server{
		Name:     "aiosmtpd",
		Version:  version,
		Host:     "127.0.0.1",
		SMTPUTF8: true,
		ports:    pc.Ports,
		inbox:    func(ctx context.Context) ([]Received, error) { return readAIOSMTPDInbox(ctx, inbox) },
	}, nil
}

// waitAIOSMTPDReady waits for the "ready aiosmtpd <version>" line the server
// prints after offset of the log, and returns the version.
func waitAIOSMTPDReady(logFile string, offset int64, done <-chan error, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(logFile); err == nil && int64(len(b)) >= offset {
			sc := bufio.NewScanner(bytes.NewReader(b[offset:]))
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "ready aiosmtpd "); ok {
					return strings.TrimSpace(v), nil
				}
			}
		}
		select {
		case err := <-done:
			if b, rerr := os.ReadFile(logFile); rerr == nil && bytes.Contains(b[min(int64(len(b)), offset):], []byte("Address already in use")) {
				return "", fmt.Errorf("exited before ready (%v): Address already in use", err)
			}
			return "", fmt.Errorf("exited before ready: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("not ready after %s", timeout)
		}
	}
}

// readAIOSMTPDInbox reads every complete transaction in dir, oldest first.
func readAIOSMTPDInbox(ctx context.Context, dir string) ([]Received, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".json") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	out := make([]Received, 0, len(names))
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		var m aiosmtpdMeta
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		// The .eml is renamed into place before the .json.
		raw, err := os.ReadFile(filepath.Join(dir, strings.TrimSuffix(n, ".json")+".eml"))
		if err != nil {
			return nil, err
		}
		from := m.MailFrom
		if from == "<>" {
			from = ""
		}
		from = strings.TrimSuffix(strings.TrimPrefix(from, "<"), ">")
		out = append(out, Received{EnvelopeFrom: from, Recipients: m.RcptTos, Raw: raw})
	}
	return out, nil
}

// aiosmtpdTail returns at most the last n bytes of file.
func aiosmtpdTail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
