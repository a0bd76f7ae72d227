#!/usr/bin/env bash
# The browser of the console's end-to-end tests (pkg/testkit/browser): Debian's
# chromium package, driven headless by chromedp over the DevTools protocol. No
# browser build of its own is downloaded: the system's package is the one tested.
#
#   scripts/browser.sh install   install chromium when it is missing (apt-get needs
#                                root, or sudo); a quick no-op when present; prints
#                                nothing on stdout
#   scripts/browser.sh path      print the browser's path (CHROMIUM_PATH or /usr/bin/chromium)
#   scripts/browser.sh version   print "chromium VERSION"
#
# The tests start a private headless instance each, with a fresh profile directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCK="$ROOT/.data/browser.lock"
BROWSER="${CHROMIUM_PATH:-/usr/bin/chromium}"

# shellcheck source=apt.sh
source "$ROOT/scripts/apt.sh" browser

have_browser() { [[ -x "$BROWSER" ]]; }

install() {
	have_browser && return 0
	mkdir -p "$ROOT/.data"
	# Test binaries run in parallel and each may ask: one at a time.
	exec 9>"$LOCK"
	flock 9
	if ! have_browser; then
		# fonts-liberation: metric-compatible fonts, so screenshots don't depend
		# on whatever fallback font happens to be present.
		apt_install chromium fonts-liberation
	fi
	have_browser || die "chromium did not install ($BROWSER is missing)"
	flock -u 9
}

version() {
	have_browser || die "$BROWSER is missing: run scripts/browser.sh install"
	echo "chromium $("$BROWSER" --version 2>/dev/null | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\./) {print $i; exit}}')"
}

case "${1:-}" in
install) install ;;
path) echo "$BROWSER" ;;
version) version ;;
-h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
*) die "unknown command ${1:-(none)} (install, path, version)" ;;
esac
