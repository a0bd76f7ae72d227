package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// profiler captures a CPU profile and the allocations of one phase.
type profiler struct {
	e        *env
	name     string
	dir      string
	cpu      *os.File
	started  time.Time
	machine0 cpuTimes
	self0    time.Duration
	pg0      map[int]backend
}

func startProfile(e *env, name string) *profiler {
	p := &profiler{e: e, name: name, dir: filepath.Join(e.o.out, "profiles"), started: time.Now()}
	if err := writeHeap(filepath.Join(p.dir, name+".allocs.base.pprof")); err != nil {
		e.log.Warn("alloc profile", "error", err)
	}
	f, err := os.Create(filepath.Join(p.dir, name+".cpu.pprof"))
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
		} else {
			p.cpu = f
		}
	}
	if err != nil {
		e.log.Warn("cpu profile", "error", err)
	}
	p.pg0 = e.postgresCPU()
	p.machine0, p.self0 = readCPUTimes(), selfCPU()
	return p
}

// stop ends the profile and records its summary in res.
func (p *profiler) stop(res *Results) {
	if p == nil {
		return
	}
	wall := time.Since(p.started)
	m1, self1 := readCPUTimes(), selfCPU()
	pg1 := p.e.postgresCPU()
	if p.cpu != nil {
		pprof.StopCPUProfile()
		_ = p.cpu.Close()
	}
	allocs := filepath.Join(p.dir, p.name+".allocs.pprof")
	if err := writeHeap(allocs); err != nil {
		p.e.log.Warn("alloc profile", "error", err)
	}
	s := ProfileSummary{Name: p.name, Seconds: wall.Seconds(),
		CPUFile: filepath.Join("profiles", p.name+".cpu.pprof"), AllocFile: filepath.Join("profiles", p.name+".allocs.pprof"),
		AllocBaseFile: filepath.Join("profiles", p.name+".allocs.base.pprof")}
	busy, total := m1.busy-p.machine0.busy, m1.total-p.machine0.total
	if total > 0 {
		s.MachineBusyPct = 100 * float64(busy) / float64(total)
	}
	s.MachineCores = float64(runtime.NumCPU()) * s.MachineBusyPct / 100
	s.HarnessCores = (self1 - p.self0).Seconds() / wall.Seconds()
	pg, pgByPart := since(p.pg0, pg1)
	s.PostgresCores = pg.Seconds() / wall.Seconds()
	s.PostgresByPart = map[string]float64{}
	for part, d := range pgByPart {
		s.PostgresByPart[part] = d.Seconds() / wall.Seconds()
	}
	s.OtherCores = max(s.MachineCores-s.HarnessCores-s.PostgresCores, 0)
	cpuPath := filepath.Join(p.dir, p.name+".cpu.pprof")
	s.CPUByPart = pprofTags(cpuPath)
	if len(s.CPUByPart) > 0 {
		sum := 0.0
		for _, v := range s.CPUByPart {
			sum += v
		}
		s.CPUByPart["unlabelled (GC, runtime)"] = max(100-sum, 0)
	}
	s.CPUTop = pprofTop(cpuPath, "-top", "-nodecount=12")
	s.CPUTopCum = pprofTop(cpuPath, "-top", "-cum", "-nodecount=25")
	s.AllocTop = pprofTop(allocs, "-top", "-nodecount=10", "-sample_index=alloc_space",
		"-base", filepath.Join(p.dir, p.name+".allocs.base.pprof"))
	res.Profiles = append(res.Profiles, s)
}

func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// pprofTop returns the entry lines of `go tool pprof <args> file`.
func pprofTop(file string, args ...string) []string {
	out, err := exec.Command("go", append(append([]string{"tool", "pprof"}, args...), file)...).Output()
	if err != nil {
		return nil
	}
	var lines []string
	started := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "flat ") {
			started = true
			continue
		}
		if started && l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// pprofTags returns the share of CPU samples per value of the "part" label.
func pprofTags(file string) map[string]float64 {
	out, err := exec.Command("go", "tool", "pprof", "-tags", file).Output()
	if err != nil {
		return nil
	}
	parts := map[string]float64{}
	inPart := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "part:"):
			inPart = true
			l = strings.TrimSpace(strings.TrimPrefix(l, "part:"))
		case strings.HasSuffix(l, ":") || l == "":
			inPart = false
			continue
		}
		if !inPart {
			continue
		}
		// "12.3s (45.6%): worker"
		open, close := strings.Index(l, "("), strings.Index(l, "%)")
		colon := strings.LastIndex(l, ": ")
		if open < 0 || close < open || colon < close {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSpace(l[open+1:close]), 64)
		if err != nil {
			continue
		}
		parts[strings.TrimSpace(l[colon+2:])] = pct
	}
	return parts
}

type cpuTimes struct{ busy, total uint64 }

// readCPUTimes reads the machine's CPU time counters from /proc/stat.
func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var t cpuTimes
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		t.total += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
	}
	return t
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backend is a PostgreSQL backend of this run: the part whose connection
// it serves and the CPU time it used.
type backend struct {
	part string
	cpu  time.Duration
}

// postgresCPU reads the CPU time of the PostgreSQL backends of this run's
// services and limits (application_name "<pgApp>:<part>"), by pid. Other
// users of a shared server are not counted.
func (e *env) postgresCPU() map[int]backend {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := e.db.Query(ctx, `SELECT pid, application_name FROM pg_stat_activity WHERE starts_with(application_name, $1)`, e.pgApp+":")
	if err != nil {
		e.log.Warn("postgres backends", "error", err)
		return nil
	}
	out := map[int]backend{}
	var (
		pid  int32
		name string
	)
	_, err = pgx.ForEachRow(rows, []any{&pid, &name}, func() error {
		out[int(pid)] = backend{part: strings.TrimPrefix(name, e.pgApp+":"), cpu: procCPU(int(pid))}
		return nil
	})
	if err != nil {
		e.log.Warn("postgres backends", "error", err)
	}
	return out
}

// since sums, by part, what each backend of now used since then (a backend
// that started since counts from zero).
func since(then, now map[int]backend) (total time.Duration, byPart map[string]time.Duration) {
	byPart = map[string]time.Duration{}
	for pid, b := range now {
		d := b.cpu - then[pid].cpu
		total += d
		byPart[b.part] += d
	}
	return total, byPart
}

// procCPU is the user and system time of process pid (0 when it cannot be read).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	st := string(b)
	end := strings.LastIndexByte(st, ')')
	if end < 0 {
		return 0
	}
	f := strings.Fields(st[end+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	k, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(u+k) * time.Second / 100 // USER_HZ
}
