#!/usr/bin/env bash
# Regenerate the README's configuration tables from the services' config
# structs (their env/default/help tags), between the CONFIG markers.
# With --check, fail instead when the README is stale.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
tables="$(go run ./services/devstack envdoc)"
new="$(awk -v tables="$tables" '
	/<!-- CONFIG:BEGIN -->/ { print; print tables; skip = 1; next }
	/<!-- CONFIG:END -->/ { skip = 0 }
	!skip { print }' README.md)"
if [[ "${1:-}" == "--check" ]]; then
	if [[ "$new" != "$(cat README.md)" ]]; then
		echo "docs: README.md configuration tables are stale (run make docs)" >&2
		exit 1
	fi
	exit 0
fi
printf '%s\n' "$new" > README.md
