package mailservers

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// IMAPServer is a running IMAP server with one account.
type IMAPServer struct {
	// Name is the implementation, "dovecot"; Version its version.
	Name, Version string
	// Host is the address the ports listen on, "127.0.0.1".
	Host string
	// Port speaks IMAP in plain text (STARTTLS offered when the server has
	// a CA); TLSPort speaks implicit TLS (0 without a CA).
	Port, TLSPort int
	// Username and Password log in (AUTH=PLAIN, LOGIN; also without TLS).
	Username, Password string
	// Maildir is the account's INBOX (a Maildir: new/, cur/, tmp/).
	Maildir string
}

// DovecotConfig is what Dovecot is set up with.
type DovecotConfig struct {
	// CA, when set, issued the server's certificate: STARTTLS is offered
	// and TLSPort listens.
	CA *CA
	// Username and Password are the one account (a passwd-file).
	Username, Password string
}

// The private Dovecot instance, all of it under one t.TempDir():
//
//	dovecot.conf   written here (dovecot -c); nothing read from /etc/dovecot
//	passwd         passwd-file of the one account (scheme PLAIN)
//	run/, state/   base_dir, state_dir
//	mail/<user>/   the account's Maildir, owned by the mail user (mail
//	               processes run as it: Dovecot refuses uid 0)
//	dovecot.log    log_path
//
// dovecot(1) runs in the foreground (-F) as a child of the test binary, in its
// own session, and dies with it (Pdeathsig).
const dovecotMailUser = "mail"

// Dovecot starts a private Dovecot (Debian's dovecot-imapd) listening on
// free 127.0.0.1 ports, and stops it when t ends.
func Dovecot(t testing.TB, cfg DovecotConfig) *IMAPServer {
	t.Helper()
	if err := install(); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	if cfg.Username == "" || cfg.Password == "" || strings.ContainsAny(cfg.Username+cfg.Password, ":\r\n ") {
		t.Fatalf("dovecot: want a username and a password without colons, spaces or line breaks")
	}
	if os.Geteuid() != 0 {
		t.Fatalf("dovecot: the private instance must be started by root (it drops privileges itself)")
	}
	out, err := exec.Command("/usr/sbin/dovecot", "--version").Output()
	if err != nil {
		t.Fatalf("dovecot: version: %v", err)
	}
	mailUser, err := user.Lookup(dovecotMailUser)
	if err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	dir := t.TempDir()
	if err := searchable(dir); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	srv := &IMAPServer{Name: "dovecot", Version: strings.Fields(string(out))[0], Host: "127.0.0.1",
		Username: cfg.Username, Password: cfg.Password, Maildir: filepath.Join(dir, "mail", cfg.Username)}
	for _, d := range []string{"run", "state", "home", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
	}
	var uid, gid int
	fmt.Sscan(mailUser.Uid, &uid)
	fmt.Sscan(mailUser.Gid, &gid)
	for _, d := range []string{"home", "mail"} {
		if err := os.Chown(filepath.Join(dir, d), uid, gid); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(cfg.Username+":{PLAIN}"+cfg.Password+"::::::\n"), 0o644); err != nil {
		t.Fatalf("dovecot: %v", err)
	}

	var cmd *exec.Cmd
	exited := make(chan struct{})
	for attempt := 1; ; attempt++ {
		ports := freePorts(t, 2)
		srv.Port = ports[0]
		if cfg.CA != nil {
			srv.TLSPort = ports[1]
		}
		if err := os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte(dovecotConf(dir, cfg, srv)), 0o644); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
		cmd, exited = startDovecot(t, dir)
		listening := []int{srv.Port}
		if srv.TLSPort != 0 {
			listening = append(listening, srv.TLSPort)
		}
		err := waitListening(listening, 15*time.Second)
		if err == nil {
			break
		}
		stopDovecot(cmd, exited)
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		if attempt < 3 && strings.Contains(string(log), "in use") {
			continue
		}
		t.Fatalf("dovecot: start in %s: %v\n%s", dir, err, log)
	}
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot in %s:\n%s", dir, log)
		}
		if err := stopDovecot(cmd, exited); err != nil {
			t.Errorf("dovecot: stop: %v", err)
		}
	})
	return srv
}

func dovecotConf(dir string, cfg DovecotConfig, srv *IMAPServer) string {
	var b strings.Builder
	fmt.Fprintf(&b, `base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = dovecot-%[2]d
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:%[1]s/mail/%%u
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
passdb {
  driver = passwd-file
  args = scheme=PLAIN %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[3]s gid=%[3]s home=%[1]s/home/%%u
}
service anvil {
  chroot =
}
`, dir, srv.Port, dovecotMailUser)
	if cfg.CA != nil {
		fmt.Fprintf(&b, "ssl = yes\nssl_cert = <%s\nssl_key = <%s\n", cfg.CA.CertFile, cfg.CA.KeyFile)
	} else {
		b.WriteString("ssl = no\n")
	}
	fmt.Fprintf(&b, `service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = %d
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %d
    ssl = yes
  }
}
`, srv.Port, srv.TLSPort)
	return b.String()
}

// startDovecot runs dovecot -F on a locked thread (Pdeathsig fires when the
// thread that started it exits).
func startDovecot(t testing.TB, dir string) (*exec.Cmd, chan struct{}) {
	cmd := exec.Command("/usr/sbin/dovecot", "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	cmd.Dir = dir
	logf, err := os.OpenFile(filepath.Join(dir, "dovecot.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGTERM}
	exited := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			close(exited)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		t.Fatalf("dovecot: start: %v", err)
	}
	return cmd, exited
}

// stopDovecot sends SIGTERM to dovecot, which stops its processes, and
// waits for the group to be gone.
func stopDovecot(cmd *exec.Cmd, exited chan struct{}) error {
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		err = errors.New("dovecot did not exit within 10s of SIGTERM; killed")
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	deadline := time.Now().Add(5 * time.Second)
	for groupAlive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}
