#!/usr/bin/env bash
# Fail when committed generated artefacts are stale:
#   1. what is generated from proto/: the Go code (*.pb.go, the grpc-gateway
#      handlers *.pb.gw.go) and the OpenAPI document (proto/openapi/*.json),
#      regenerated with the pinned buf and plugins, then compared with what was
#      there before, and with git;
#   2. go.mod/go.sum of every workspace module (go mod tidy -diff).
# Migrations are plain .sql files embedded with go:embed: nothing is generated from them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
fail=0

# The generated files: Go code, gateway handlers and the OpenAPI document.
GENERATED=(':(glob)proto/**/*.pb.go' ':(glob)proto/**/*.pb.gw.go' ':(glob)proto/openapi/*.json')

snapshot() {
	find proto -type f \( -name '*.pb.go' -o -name '*.pb.gw.go' -o -path 'proto/openapi/*.json' \) -print0 |
		sort -z | xargs -0 -r sha256sum
}

before="$(snapshot)"
bash scripts/proto.sh
after="$(snapshot)"
if [[ "$before" != "$after" ]]; then
	echo "verify: regenerating proto/ changed the generated code:" >&2
	diff <(echo "$before") <(echo "$after") >&2 || true
	fail=1
fi
# In a clean checkout (CI) the same question, asked of git: generated files that
# differ from the commit or are not committed at all.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	dirty="$(git status --porcelain -- "${GENERATED[@]}")"
	if [[ -n "$dirty" ]]; then
		echo "verify: generated code differs from the commit (commit it with the .proto change):" >&2
		echo "$dirty" >&2
		git --no-pager diff --stat -- "${GENERATED[@]}" >&2 || true
		fail=1
	fi
fi

bash scripts/docs.sh --check || fail=1

while IFS= read -r dir; do
	if ! (cd "$dir" && go mod tidy -diff >/dev/null 2>&1); then
		echo "verify: ${dir#"$ROOT"/}/go.mod is not tidy (run make tidy):" >&2
		(cd "$dir" && go mod tidy -diff >&2) || true
		fail=1
	fi
done < <(go list -m -f '{{.Dir}}')

if [[ "$fail" != 0 ]]; then
	echo "verify: FAILED" >&2
	exit 1
fi
echo "verify: generated code and go.mod files are up to date" >&2
