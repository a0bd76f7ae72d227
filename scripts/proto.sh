#!/usr/bin/env bash
# Lint the proto tree and regenerate what is committed from it: the Go code
# next to the .proto files (messages, gRPC, and the grpc-gateway HTTP/JSON
# handlers) and the OpenAPI document proto/openapi/emailsender.swagger.json,
# with buf and the protoc plugins pinned in scripts/tools.sh (installed into
# .bin/ when missing). buf runs local plugins only: the Buf Schema Registry
# is not needed, and any imported third-party .proto must live in proto/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/tools.sh
source "$ROOT/scripts/tools.sh"

ensure_tool buf
ensure_tool protoc-gen-go
ensure_tool protoc-gen-go-grpc
ensure_tool protoc-gen-grpc-gateway
ensure_tool protoc-gen-openapiv2
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
