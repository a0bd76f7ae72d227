package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries are the programs the harness runs as processes.
type Binaries struct {
	Ingest, Worker, Report, NATSServer string
}

// BuildBinaries builds the three services and nats-server (the version the pkg
// module embeds, from the workspace's module graph) into dir with one go build.
// It must run inside the go.work workspace.
func BuildBinaries(ctx context.Context, dir string) (Binaries, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, err
	}
	pkgs := []string{
		"github.com/namirasoft/email-sender/services/ingest/cmd/ingest",
		"github.com/namirasoft/email-sender/services/worker/cmd/worker",
		"github.com/namirasoft/email-sender/services/report/cmd/report",
		"github.com/nats-io/nats-server/v2",
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("go build: %v: %s", err, out)
	}
	b := Binaries{
		Ingest:     filepath.Join(dir, "ingest"),
		Worker:     filepath.Join(dir, "worker"),
		Report:     filepath.Join(dir, "report"),
		NATSServer: filepath.Join(dir, "nats-server"),
	}
	for _, p := range []string{b.Ingest, b.Worker, b.Report, b.NATSServer} {
		if _, err := os.Stat(p); err != nil {
			return Binaries{}, fmt.Errorf("go build did not produce %s: %w", p, err)
		}
	}
	return b, nil
}

// proc is one child process. A supervised proc that exits while it should be
// running is counted as an unexpected exit and started again after a second,
// as an orchestrator would.
type proc struct {
	name      string
	bin       string
	args      []string
	env       []string
	logPath   string
	supervise bool
	onEvent   func(format string, args ...any)
	// port is the fixed port the process serves on (0: none), kept across restarts.
	port int

	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{}
	want       bool
	starts     int
	unexpected []string
	closed     bool
}

func (p *proc) logf(format string, args ...any) {
	if p.onEvent != nil {
		p.onEvent(format, args...)
	}
}

// Start starts the process if it is not running.
func (p *proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.want = true
	return p.startLocked()
}

func (p *proc) startLocked() error {
	if p.closed {
		return errors.New(p.name + ": closed")
	}
	if p.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "---- %s start %d at %s\n", p.name, p.starts+1, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout = logf
	cmd.Stderr = logf
	// The children die with the harness, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.starts++
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		close(exited)
		if p.cmd == cmd {
			p.cmd = nil
		}
		if p.want && p.supervise && !p.closed {
			p.unexpected = append(p.unexpected, fmt.Sprintf("%s exited on its own (%v): %s", p.name, err, lastLine(p.Tail(600))))
			p.logf("%s exited unexpectedly (%v); restarting in 1s", p.name, err)
			go func() {
				time.Sleep(time.Second)
				p.mu.Lock()
				defer p.mu.Unlock()
				if p.want && p.cmd == nil {
					if err := p.startLocked(); err != nil {
						p.logf("restart %s: %v", p.name, err)
					}
				}
			}()
		}
	}()
	return nil
}

// Signal sends sig and waits (up to timeout) for the process to exit; the
// process stays down until Start.
func (p *proc) Signal(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	p.want = false
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s did not exit within %s after %v; killed", p.name, timeout, sig)
	}
}

func (p *proc) addr() string { return hostPort(p.port) }

// Running reports whether the process runs now.
func (p *proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Unexpected lists the process's exits that nobody asked for.
func (p *proc) Unexpected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.unexpected...)
}

// Close stops the process for good (SIGTERM, then SIGKILL after 10s).
func (p *proc) Close() {
	_ = p.Signal(syscall.SIGTERM, 10*time.Second)
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// Tail returns the last n bytes of the process log.
func (p *proc) Tail(n int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	if st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
