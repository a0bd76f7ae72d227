#!/usr/bin/env bash
# The SMTP servers of the interoperability tests (pkg/testkit/mailservers), none of them
# written here:
#   Mailpit   Go, pinned in scripts/tools.sh, built into .bin/
#   Postfix   Debian's postfix package
#   aiosmtpd  Debian's python3-aiosmtpd package (run by /usr/bin/python3)
# and the IMAP server of the inbound IMAP poller's tests:
#   Dovecot   Debian's dovecot-imapd package
#
#   scripts/mail-servers.sh install   install what is missing (apt-get needs root,
#                                     or sudo); prints nothing on stdout
#   scripts/mail-servers.sh versions  print "name version" for each server
#
# The tests start and stop the servers themselves, each as a private instance on
# free loopback ports; nothing here runs a system-wide mail server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCK="$ROOT/.data/mail-servers.lock"

# shellcheck source=apt.sh
source "$ROOT/scripts/apt.sh" mail-servers

have_postfix() { [[ -x /usr/sbin/postfix && -x /usr/lib/postfix/sbin/master ]]; }
have_aiosmtpd() { [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; }
have_dovecot() { [[ -x /usr/sbin/dovecot && -x /usr/lib/dovecot/imap ]]; }
have_sasl() { [[ -x /usr/sbin/saslpasswd2 ]] && ls /usr/lib/*/sasl2/libplain.so* >/dev/null 2>&1; }

install() {
	mkdir -p "$ROOT/.data"
	# Test binaries run in parallel and each may ask: one at a time.
	exec 9>"$LOCK"
	flock 9
	bash "$ROOT/scripts/tools.sh" mailpit >&2
	local pkgs=()
	have_postfix || pkgs+=(postfix)
	have_sasl || pkgs+=(sasl2-bin libsasl2-modules)
	have_aiosmtpd || pkgs+=(python3-aiosmtpd)
	have_dovecot || pkgs+=(dovecot-imapd)
	if [[ ${#pkgs[@]} -gt 0 ]]; then
		apt_install "${pkgs[@]}"
		# Debian's postinst may start the system-wide instance; the tests run
		# their own, so leave none running on port 25.
		if [[ " ${pkgs[*]} " == *" postfix "* ]]; then
			as_root postfix stop >/dev/null 2>&1 || true
		fi
		if [[ " ${pkgs[*]} " == *" dovecot-imapd "* ]]; then
			as_root doveadm stop >/dev/null 2>&1 || true
		fi
	fi
	have_postfix || die "postfix did not install"
	have_aiosmtpd || die "python3-aiosmtpd did not install"
	have_dovecot || die "dovecot-imapd did not install"
	flock -u 9
}

versions() {
	echo "mailpit $("$ROOT/.bin/mailpit" version 2>/dev/null | head -1 | awk '{print $NF}')"
	echo "postfix $(/usr/sbin/postconf -d -h mail_version 2>/dev/null)"
	echo "aiosmtpd $(/usr/bin/python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)' 2>/dev/null)"
	echo "dovecot $(/usr/sbin/dovecot --version 2>/dev/null | awk '{print $1}')"
}

case "${1:-}" in
install) install ;;
versions) versions ;;
-h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
*) die "unknown command ${1:-(none)} (install, versions)" ;;
esac
