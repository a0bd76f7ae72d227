# Sourced by the scripts that install Debian packages for the tests
# (browser.sh, mail-servers.sh): `source scripts/apt.sh NAME` defines log and
# die (prefixed with NAME), as_root and apt_install.

APT_NAME="${1:?usage: source scripts/apt.sh NAME}"

log() { echo "$APT_NAME: $*" >&2; }
die() {
	echo "$APT_NAME: error: $*" >&2
	exit 1
}

# as_root CMD...: run CMD as root (directly, or with sudo -n).
as_root() {
	if [[ "$(id -u)" == 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

# apt_install PKG...: install Debian packages, updating the lists only when
# the first try fails (a fresh machine's lists may be stale or empty).
apt_install() {
	command -v apt-get >/dev/null 2>&1 || die "apt-get is missing: install $* by hand"
	log "installing $* (apt-get)"
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2; then
		as_root apt-get update >&2
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
	fi
}
