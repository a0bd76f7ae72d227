#!/usr/bin/env bash
# Lint the proto tree and regenerate the Go code committed next to the .proto
# files, with buf and the protoc plugins pinned in scripts/tools.sh (installed
# into .bin/ when missing). buf runs local plugins only: the Buf Schema Registry
# is not needed, and any imported third-party .proto must live in proto/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/tools.sh
source "$ROOT/scripts/tools.sh"

ensure_tool buf
ensure_tool protoc-gen-go
ensure_tool protoc-gen-go-grpc
# buf finds the "local:" plugins of buf.gen.yaml on PATH: the pinned ones come first.
export PATH="$TOOLS_BIN:$PATH"

cd "$ROOT/proto"
echo "proto: buf lint" >&2
buf lint
echo "proto: buf generate" >&2
buf generate

# Formatting is reported, not enforced, so a stray blank line never blocks a build.
if ! buf format --exit-code >/dev/null 2>&1; then
	echo "proto: warning: some .proto files are not buf-formatted; see 'cd proto && buf format -d', fix with 'buf format -w'" >&2
fi
echo "proto: done" >&2
