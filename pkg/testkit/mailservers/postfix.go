package mailservers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The private Postfix instance, all of it under one t.TempDir():
//
//	etc/main.cf, etc/master.cf    written here (postfix -c etc); nothing read
//	                              from /etc/postfix but the package's own
//	                              meta files (dynamicmaps.cf, postfix-files)
//	etc/refuse.regexp             check_recipient_access table
//	etc/domains.regexp            virtual_mailbox_domains: all but literals
//	etc/tls/                      copies of the CA's key and certificate chain
//	etc/sasl/smtpd.conf           Cyrus SASL: sasldb, mech_list PLAIN LOGIN
//	etc/sasl/smtpd-login.conf     the same with mech_list LOGIN (LoginOnly)
//	sasldb2                       the one account (saslpasswd2)
//	queue/, data/                 queue_directory, data_directory
//	mail/inbox/{new,cur,tmp}      the Maildir every recipient is delivered to
//	postfix.log                   maillog_file (written by postlogd)
//	master.log                    stdout and stderr of master(8)
//
// master(8) runs in the foreground (-d) as a child of the test binary, in its
// own session, so that SIGTERM to it stops the whole instance ("postfix stop"
// does the same) and it dies with the test binary (Pdeathsig).
const (
	postfixHostname = "mx.postfix.test"
	// postfixInbox is the one Maildir, relative to virtual_mailbox_base: the
	// virtual(8) agent does not allow per-recipient paths from regexp
	// substitutions, so recipients are told apart by the Delivered-To header
	// it prepends to each copy.
	postfixInbox = "inbox"
)

// Postfix starts a private Postfix instance configured by cfg and stops it
// when t ends.
//
// It listens in every Mode, each on its own 127.0.0.1 port (LoginOnly only
// when cfg.Username is set), with strict settings: strict_rfc821_envelopes,
// EHLO required and checked (reject_invalid_helo_hostname,
// reject_non_fqdn_helo_hostname; Postfix applies them at RCPT TO). AUTH is
// Cyrus SASL with a sasldb; cfg.Username logs in as given (a name without a
// domain is in the realm mx.postfix.test). Every accepted recipient of any
// domain is delivered by virtual(8) into one Maildir; a copy's Recipients
// come from the Delivered-To header and its EnvelopeFrom from the
// Return-Path header that virtual(8) prepends.
//
// It needs root (master(8) drops privileges to the postfix user itself) and
// makes the directory above t.TempDir() searchable by that user.
func Postfix(t testing.TB, cfg Config) *Server {
	t.Helper()
	if err := install(); err != nil {
		t.Fatalf("postfix: %v", err)
	}
	if err := checkConfig(cfg); err != nil {
		t.Fatalf("postfix: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("postfix: the private instance must be started by root (master(8) drops privileges itself)")
	}
	version, err := postconfDefault("mail_version")
	if err != nil {
		t.Fatalf("postfix: %v", err)
	}
	daemonDir, err := postconfDefault("daemon_directory")
	if err != nil {
		t.Fatalf("postfix: %v", err)
	}
	ids, err := postfixIDs()
	if err != nil {
		t.Fatalf("postfix: %v", err)
	}

	dir := t.TempDir()
	if err := searchable(dir); err != nil {
		t.Fatalf("postfix: %v", err)
	}
	inst := &postfixInstance{dir: dir, cfg: cfg, ids: ids}
	if err := inst.prepare(); err != nil {
		t.Fatalf("postfix: set up %s: %v", dir, err)
	}

	modes := []Mode{Plain, StartTLSRequired, Implicit}
	if cfg.Username != "" {
		modes = append(modes, LoginOnly)
	}
	// A port freePorts found may be taken by someone else before master(8)
	// binds it: try again with new ports then.
	var ports []int
	for attempt := 1; ; attempt++ {
		ports = freePorts(t, len(modes))
		err = inst.start(daemonDir, modes, ports)
		if err == nil {
			break
		}
		if attempt < 3 && strings.Contains(inst.logTail(), "Address already in use") {
			t.Logf("postfix: %v; retrying with other ports", err)
			continue
		}
		t.Fatalf("postfix: start in %s: %v\n%s", dir, err, inst.logTail())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix in %s:\n%s", dir, inst.logTail())
		}
		if err := inst.stop(); err != nil {
			t.Errorf("postfix: stop: %v\n%s", err, inst.logTail())
		}
	})

	srv := &Server{
		Name:     "postfix",
		Version:  version,
		Host:     "127.0.0.1",
		SMTPUTF8: true,
		ports:    map[Mode]int{},
		inbox:    inst.inbox,
	}
	for i, m := range modes {
		srv.ports[m] = ports[i]
	}
	return srv
}

func checkConfig(cfg Config) error {
	switch {
	case cfg.CA == nil:
		return errors.New("Config.CA is required")
	case cfg.MaxSize <= 0:
		return errors.New("Config.MaxSize is required")
	case cfg.IdleTimeout <= 0:
		return errors.New("Config.IdleTimeout is required")
	case cfg.RefuseLocalPart == "":
		return errors.New("Config.RefuseLocalPart is required")
	case cfg.Username != "" && cfg.Password == "":
		return errors.New("Config.Password is required with Config.Username")
	}
	return nil
}

// postconfDefault returns Postfix's built-in value of parameter name.
func postconfDefault(name string) (string, error) {
	out, err := exec.Command("postconf", "-d", "-h", name).Output()
	if err != nil {
		return "", fmt.Errorf("postconf -d -h %s: %w%s", name, err, stderrOf(err))
	}
	return strings.TrimSpace(string(out)), nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return " (" + strings.TrimSpace(string(ee.Stderr)) + ")"
	}
	return ""
}

// postfixUIDs are the ids of Debian's postfix user and groups.
type postfixUIDs struct {
	uid, gid, postdrop int
}

func postfixIDs() (postfixUIDs, error) {
	var ids postfixUIDs
	u, err := user.Lookup("postfix")
	if err != nil {
		return ids, err
	}
	g, err := user.LookupGroup("postdrop")
	if err != nil {
		return ids, err
	}
	for _, f := range []struct {
		to *int
		s  string
	}{{&ids.uid, u.Uid}, {&ids.gid, u.Gid}, {&ids.postdrop, g.Gid}} {
		if *f.to, err = strconv.Atoi(f.s); err != nil {
			return ids, fmt.Errorf("postfix ids: %w", err)
		}
	}
	return ids, nil
}

// searchable lets the postfix user reach dir (virtual(8) and the SASL
// plugin open absolute paths below it after dropping privileges): dir
// becomes 0755, and the directory testing made for the test's temporary
// directories (0700) gains search permission; the directories above must
// have it already.
func searchable(dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	parent := filepath.Dir(dir)
	fi, err := os.Stat(parent)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o011 != 0o011 {
		if err := os.Chmod(parent, fi.Mode().Perm()|0o011); err != nil {
			return err
		}
	}
	for p := filepath.Dir(parent); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("the postfix user cannot search %s (mode %v), which holds %s: use a TMPDIR everyone may search", p, fi.Mode().Perm(), dir)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

type postfixInstance struct {
	dir     string
	cfg     Config
	ids     postfixUIDs
	master  *exec.Cmd
	exited  chan struct{} // closed when master has exited
	waitErr error         // master's exit status, set before exited is closed
}

func (p *postfixInstance) path(elem ...string) string {
	return filepath.Join(append([]string{p.dir}, elem...)...)
}

// prepare writes main.cf, the tables, the TLS and SASL files and creates
// the directories with the owners Postfix insists on (those postfix-files
// gives, what "postfix check" would create).
func (p *postfixInstance) prepare() error {
	root, pf := postfixUIDs{}, p.ids
	type dirSpec struct {
		path     string
		uid, gid int
		mode     fs.FileMode
	}
	dirs := []dirSpec{
		{"etc", root.uid, root.gid, 0o755},
		{"etc/tls", root.uid, root.gid, 0o700},
		{"etc/sasl", root.uid, root.gid, 0o755},
		{"queue", root.uid, root.gid, 0o755},
		{"queue/pid", root.uid, root.gid, 0o755},
		{"queue/maildrop", pf.uid, pf.postdrop, 0o730},
		{"queue/public", pf.uid, pf.postdrop, 0o710},
		{"data", pf.uid, pf.gid, 0o700},
		{"mail", pf.uid, pf.gid, 0o700},
	}
	for _, q := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		dirs = append(dirs, dirSpec{"queue/" + q, pf.uid, root.gid, 0o700})
	}
	for _, d := range dirs {
		name := p.path(d.path)
		if err := os.MkdirAll(name, 0o755); err != nil {
			return err
		}
		if err := os.Chown(name, d.uid, d.gid); err != nil {
			return err
		}
		if err := os.Chmod(name, d.mode); err != nil {
			return err
		}
	}

	// TLS: smtpd(8) reads these as root before dropping privileges.
	for _, c := range []struct{ from, to string }{
		{p.cfg.CA.KeyFile, "etc/tls/key.pem"},
		{p.cfg.CA.CertFile, "etc/tls/chain.pem"},
	} {
		b, err := os.ReadFile(c.from)
		if err != nil {
			return err
		}
		if err := writeConfig(p.path(c.to), b, 0o600); err != nil {
			return err
		}
	}

	files := map[string]string{
		"etc/main.cf": p.mainCF(),
		// Regexp tables are case-insensitive; only the whole address is
		// looked up in them.
		"etc/domains.regexp": "!/^\\[.*\\]$/ OK\n",
		"etc/refuse.regexp": fmt.Sprintf("/^%s@[^@]*$/ REJECT refused by the test configuration\n",
			strings.ReplaceAll(regexp.QuoteMeta(p.cfg.RefuseLocalPart), "/", `\/`)),
	}
	if p.cfg.Username != "" {
		for name, mechs := range map[string]string{"smtpd": "PLAIN LOGIN", "smtpd-login": "LOGIN"} {
			files["etc/sasl/"+name+".conf"] = fmt.Sprintf(
				"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: %s\nmech_list: %s\n",
				p.path("sasldb2"), mechs)
		}
	}
	for name, content := range files {
		if err := writeConfig(p.path(name), []byte(content), 0o644); err != nil {
			return err
		}
	}

	if p.cfg.Username != "" {
		// A name with "@" is stored with its own realm; one without it in
		// the realm smtpd uses for it (smtpd_sasl_local_domain).
		db := p.path("sasldb2")
		cmd := exec.Command("saslpasswd2", "-p", "-c", "-f", db, "-u", postfixHostname, p.cfg.Username)
		cmd.Stdin = strings.NewReader(p.cfg.Password)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("saslpasswd2: %w (%s)", err, bytes.TrimSpace(out))
		}
		if err := os.Chown(db, 0, p.ids.gid); err != nil {
			return err
		}
		if err := os.Chmod(db, 0o640); err != nil {
			return err
		}
	}
	return nil
}

// writeConfig writes a configuration file dated a minute ago: Postfix
// waits (up to seconds) until main.cf looks old enough not to be still
// being edited.
func writeConfig(name string, data []byte, mode fs.FileMode) error {
	if err := os.WriteFile(name, data, mode); err != nil {
		return err
	}
	old := time.Now().Add(-time.Minute)
	return os.Chtimes(name, old, old)
}

func (p *postfixInstance) mainCF() string {
	idle := int64((p.cfg.IdleTimeout + time.Second - 1) / time.Second)
	var b strings.Builder
	set := func(name, value string) { fmt.Fprintf(&b, "%s = %s\n", name, value) }
	set("compatibility_level", "3.6")
	set("queue_directory", p.path("queue"))
	set("data_directory", p.path("data"))
	set("mail_owner", "postfix")
	set("setgid_group", "postdrop")
	set("maillog_file", p.path("postfix.log"))
	set("maillog_file_prefixes", p.dir)

	// Network: loopback only, no DNS at all.
	set("inet_interfaces", "127.0.0.1")
	set("inet_protocols", "ipv4")
	set("myhostname", postfixHostname)
	set("mydomain", "postfix.test")
	set("myorigin", "$mydomain")
	set("mydestination", "")
	set("mynetworks", "127.0.0.0/8")
	set("relay_domains", "")
	set("relayhost", "")
	set("smtpd_peername_lookup", "no")
	set("smtp_dns_support_level", "disabled")
	set("lmtp_dns_support_level", "disabled")

	// Strict.
	set("strict_rfc821_envelopes", "yes")
	set("smtpd_helo_required", "yes")
	set("smtpd_helo_restrictions", "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname")
	set("smtpd_client_restrictions", "")
	set("smtpd_sender_restrictions", "")
	set("smtpd_relay_restrictions", "permit_mynetworks, permit_sasl_authenticated, reject")
	set("smtpd_recipient_restrictions", "check_recipient_access regexp:"+p.path("etc", "refuse.regexp")+", permit")
	set("message_size_limit", strconv.FormatInt(p.cfg.MaxSize, 10))
	set("smtpd_timeout", fmt.Sprintf("%ds", idle))
	set("smtputf8_enable", "yes")

	// Keep the envelope and the message as the client sent them: no
	// address rewriting, no headers added for "local" clients, no
	// X-Original-To.
	set("allow_percent_hack", "no")
	set("swap_bangpath", "no")
	set("append_dot_mydomain", "no")
	set("recipient_delimiter", "")
	set("local_header_rewrite_clients", "")
	set("enable_original_recipient", "no")
	set("alias_maps", "")
	set("alias_database", "")
	set("biff", "no")
	set("readme_directory", "no")
	set("in_flow_delay", "0s")

	// TLS: STARTTLS offered everywhere, required per listener.
	set("smtpd_tls_chain_files", p.path("etc", "tls", "key.pem")+", "+p.path("etc", "tls", "chain.pem"))
	set("smtpd_tls_security_level", "may")
	set("smtpd_tls_loglevel", "1")

	// SASL, enabled per listener.
	set("smtpd_sasl_type", "cyrus")
	set("smtpd_sasl_path", "smtpd")
	set("cyrus_sasl_config_path", p.path("etc", "sasl"))
	set("smtpd_sasl_local_domain", postfixHostname)
	set("smtpd_sasl_auth_enable", "no")
	set("smtpd_sasl_security_options", "noanonymous")
	set("smtpd_tls_auth_only", "no")

	// Delivery: every domain to one Maildir. Address literals of our own
	// address (x@[127.0.0.1]) are always local: local_transport delivers
	// them the same way.
	set("virtual_mailbox_domains", "regexp:"+p.path("etc", "domains.regexp"))
	set("virtual_transport", "virtual")
	set("local_transport", "virtual")
	set("local_recipient_maps", "")
	set("virtual_mailbox_base", p.path("mail"))
	set("virtual_mailbox_maps", "static:"+postfixInbox+"/")
	set("virtual_uid_maps", fmt.Sprintf("static:%d", p.ids.uid))
	set("virtual_gid_maps", fmt.Sprintf("static:%d", p.ids.gid))
	set("virtual_minimum_uid", "1")
	set("virtual_mailbox_limit", "0")
	set("mailbox_size_limit", "0")
	return b.String()
}

// masterCF is master.cf: the listeners and Debian's usual services, none of
// them chrooted.
func (p *postfixInstance) masterCF(modes []Mode, ports []int) string {
	var b strings.Builder
	for i, m := range modes {
		fmt.Fprintf(&b, "127.0.0.1:%d inet n - n - - smtpd\n  -o syslog_name=postfix/%s\n", ports[i], m)
		opts := []string{}
		switch m {
		case Plain, LoginOnly:
			opts = append(opts, "smtpd_tls_security_level=may")
		case StartTLSRequired:
			opts = append(opts, "smtpd_tls_security_level=encrypt")
		case Implicit:
			opts = append(opts, "smtpd_tls_wrappermode=yes", "smtpd_tls_security_level=encrypt")
		}
		if p.cfg.Username != "" {
			opts = append(opts, "smtpd_sasl_auth_enable=yes")
		}
		if m == LoginOnly {
			opts = append(opts, "smtpd_sasl_path=smtpd-login")
		}
		for _, o := range opts {
			fmt.Fprintf(&b, "  -o %s\n", o)
		}
	}
	b.WriteString(`pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
`)
	return b.String()
}

// start writes master.cf for ports and runs master(8) until every port
// listens and the Plain one greets.
func (p *postfixInstance) start(daemonDir string, modes []Mode, ports []int) error {
	if err := writeConfig(p.path("etc", "master.cf"), []byte(p.masterCF(modes, ports)), 0o644); err != nil {
		return err
	}
	logf, err := os.OpenFile(p.path("master.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(daemonDir, "master"), "-c", p.path("etc"), "-d")
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGTERM}
	// Pdeathsig fires when the thread that started master exits: start and
	// wait for it on one locked thread.
	p.master, p.exited = cmd, make(chan struct{})
	started := make(chan error, 1)
	go func(exited chan struct{}) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		close(exited)
	}(p.exited)
	if err := <-started; err != nil {
		p.master = nil
		return err
	}

	ready := make(chan error, 1)
	go func() {
		err := waitListening(ports, 15*time.Second)
		if err == nil {
			err = greets(ports[0], 10*time.Second)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			_ = p.stop()
		}
		return err
	case <-p.exited:
		_ = p.stop()
		return fmt.Errorf("master exited: %v", p.waitErr)
	}
}

// greets reads the 220 greeting on port: smtpd(8) has started (TLS
// files, SASL and tables loaded).
func greets(port int, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no greeting on port %d: %w", port, err)
	}
	if !strings.HasPrefix(line, "220 ") {
		return fmt.Errorf("greeting on port %d: %q", port, strings.TrimSpace(line))
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return nil
}

// stop does what "postfix stop" does: SIGTERM to master(8), which passes it
// on to its process group. It then waits for the group to be gone (so that
// nothing writes below t.TempDir() while it is removed).
func (p *postfixInstance) stop() error {
	if p.master == nil {
		return nil
	}
	pid := p.master.Process.Pid
	_ = p.master.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		err = errors.New("master did not exit within 10s of SIGTERM; killed")
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.exited
	}
	deadline := time.Now().Add(5 * time.Second)
	for groupAlive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			if err == nil {
				err = fmt.Errorf("processes of group %d still running 5s after master exited; killed", pid)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.master = nil
	return err
}

// groupAlive reports whether a process of process group pgid is running
// (zombies do not count: nobody may reap them in a container).
func groupAlive(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			return true
		}
	}
	return false
}

// logTail is the end of Postfix's log and master(8)'s output.
func (p *postfixInstance) logTail() string {
	var b strings.Builder
	for _, name := range []string{"master.log", "postfix.log"} {
		data, err := os.ReadFile(p.path(name))
		if err != nil {
			fmt.Fprintf(&b, "--- %s: %v\n", name, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(&b, "--- %s (tail)\n%s\n", name, strings.Join(lines, "\n"))
	}
	return b.String()
}

// inbox reads every message of the Maildir. It only reads files, so it may
// run concurrently with itself and with deliveries (which reach new/ by
// rename when complete).
func (p *postfixInstance) inbox(ctx context.Context) ([]Received, error) {
	type file struct {
		name string
		raw  []byte
	}
	var files []file
	for _, sub := range []string{"new", "cur"} {
		d := p.path("mail", postfixInbox, sub)
		ents, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue // nothing delivered yet
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if !e.Type().IsRegular() {
				continue
			}
			raw, err := os.ReadFile(filepath.Join(d, e.Name()))
			if errors.Is(err, fs.ErrNotExist) {
				continue // moved from new/ to cur/ meanwhile
			}
			if err != nil {
				return nil, err
			}
			files = append(files, file{e.Name(), raw})
		}
	}
	// Maildir names start with the delivery time.
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	out := make([]Received, 0, len(files))
	for _, f := range files {
		from, to := traceHeaders(f.raw)
		r := Received{EnvelopeFrom: from, Raw: f.raw}
		if to != "" {
			r.Recipients = []string{to}
		}
		out = append(out, r)
	}
	return out, nil
}

// traceHeaders returns the first Return-Path (without angle brackets) and
// Delivered-To of a message's header: the ones virtual(8) prepended.
func traceHeaders(raw []byte) (returnPath, deliveredTo string) {
	var haveRP, haveDT bool
	var name, value string
	flush := func() {
		v := strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Return-Path") && !haveRP:
			haveRP, returnPath = true, strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
		case strings.EqualFold(name, "Delivered-To") && !haveDT:
			haveDT, deliveredTo = true, v
		}
		name, value = "", ""
	}
	for rest := raw; len(rest) > 0; {
		var l []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		} else {
			l, rest = rest, nil
		}
		line := strings.TrimSuffix(string(l), "\r")
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			value += " " + strings.TrimSpace(line)
			continue
		}
		flush()
		if k, v, ok := strings.Cut(line, ":"); ok {
			name, value = k, v
		}
		if haveRP && haveDT {
			break
		}
	}
	flush()
	return returnPath, deliveredTo
}
