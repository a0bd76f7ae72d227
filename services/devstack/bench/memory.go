package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// proc is one service running as its own process.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string
}

// runMemory builds the three services, runs each as its own process against
// the same PostgreSQL schema and NATS server, and reads their resident memory
// at rest and with o.queued messages accepted and waiting: the messages go to
// an account whose SMTP server never answers DATA, so the worker holds its
// in-flight deliveries and the rest wait on the stream.
func runMemory(ctx context.Context, e *env, o options, res *Results) error {
	dir, err := os.MkdirTemp("", "emailsender-bench-bin")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e.log.Info("memory: building the service binaries")
	build := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"github.com/namirasoft/email-sender/services/ingest/cmd/ingest",
		"github.com/namirasoft/email-sender/services/worker/cmd/worker",
		"github.com/namirasoft/email-sender/services/report/cmd/report")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, out)
	}
	base := append(os.Environ(), "DATABASE_URL="+e.dbURL, "NATS_URL="+e.natsURL, "LOG_LEVEL=warn",
		"INGEST_METRICS_ADDR=127.0.0.1:0", "WORKER_METRICS_ADDR=127.0.0.1:0", "REPORT_METRICS_ADDR=127.0.0.1:0",
		"INGEST_HTTP_ADDR=off", "REPORT_HTTP_ADDR=off",
		// Throughput of one account: no per-account limits.
		"RATE_LIMIT_DEFAULT=0", "DAILY_QUOTA_DEFAULT=0", "WORKER_ACCOUNT_RATE=0",
		"OUTBOUND_ALLOW_NETS=127.0.0.0/8,::1") // the SMTP sink runs on this machine
	var procs []*proc
	defer func() {
		for _, p := range procs {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			_ = p.cmd.Wait()
		}
	}()
	start := func(name string, env ...string) (*proc, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		switch name {
		case "ingest":
			env = append(env, "INGEST_GRPC_ADDR="+addr)
		case "worker":
			env = append(env, "WORKER_GRPC_ADDR="+addr, "WORKER_PROVIDERS=smtp", "WORKER_CONCURRENCY="+strconv.Itoa(workerConcurrency))
		case "report":
			env = append(env, "REPORT_GRPC_ADDR="+addr)
		}
		cmd := exec.Command(filepath.Join(dir, name))
		cmd.Env = append(append([]string{}, base...), env...)
		cmd.Stderr = &prefixWriter{prefix: name + ": "}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		p := &proc{name: name, cmd: cmd, addr: addr}
		procs = append(procs, p)
		return p, waitListening(ctx, addr, 60*time.Second)
	}
	ingestP, err := start("ingest")
	if err != nil {
		return err
	}
	if _, err := start("worker"); err != nil {
		return err
	}
	if _, err := start("report"); err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	rest := map[string]Mem{}
	for _, p := range procs {
		rest[p.name] = readMem(p.cmd.Process.Pid)
	}

	e.log.Info("memory: queueing", "messages", o.queued)
	conns, closeConns, err := dialN(ingestP.addr, grpcConns)
	if err != nil {
		return err
	}
	defer closeConns()
	req := message("someone@example.com", 1024)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, batchCalls)
	t0 := time.Now()
	for c := range batchCalls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := v1.NewSendServiceClient(conns[c%len(conns)])
			for {
				end := next.Add(batchSize)
				if end-batchSize >= int64(o.queued) {
					return
				}
				k := min(int64(o.queued), end) - (end - batchSize)
				breq := &v1.SendBatchRequest{Messages: make([]*v1.SendEmailRequest, k)}
				for j := range breq.Messages {
					breq.Messages[j] = req
				}
				if _, err := client.SendBatch(e.authCtx(ctx, "queued"), breq); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return fmt.Errorf("queue messages: %w", err)
	}
	queueSecs := time.Since(t0).Seconds()
	time.Sleep(3 * time.Second)
	var inflight int
	_ = e.db.QueryRow(ctx, `SELECT count(*) FROM messages WHERE account_id = $1 AND status <> $2`,
		e.accounts["queued"].AccountID, int16(v1.MessageStatus_QUEUED)).Scan(&inflight)
	loaded := map[string]Mem{}
	for _, p := range procs {
		loaded[p.name] = readMem(p.cmd.Process.Pid)
	}
	m := MemoryResult{Queued: o.queued, QueueSeconds: queueSecs, InFlight: inflight, WorkerConcurrency: workerConcurrency}
	for _, p := range procs {
		m.Services = append(m.Services, ServiceMem{Service: p.name, Rest: rest[p.name], Queued: loaded[p.name]})
	}
	res.Memory = &m
	e.log.Info("memory measured", "queue_seconds", fmt.Sprintf("%.1f", queueSecs))
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s", addr, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readMem reads VmRSS and VmHWM of pid, in MB.
func readMem(pid int) Mem {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}
	}
	defer f.Close()
	var m Mem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			m.RSSMB = kb / 1024
		case "VmHWM:":
			m.HWMMB = kb / 1024
		}
	}
	return m
}

// prefixWriter forwards a process's stderr with a prefix.
type prefixWriter struct {
	prefix string
	mu     sync.Mutex
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line != "" {
			fmt.Fprint(os.Stderr, w.prefix+line)
		}
	}
	return len(p), nil
}
