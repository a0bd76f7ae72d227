#!/usr/bin/env bash
# Pinned developer tools, installed into the project-local .bin/ when missing.
#
#   scripts/tools.sh [TOOL...]   ensure the named tools (default: all) are in .bin/
#   source scripts/tools.sh      define ensure_tool / TOOLS_BIN for other scripts
#
# A tool counts as present when its binary, read with `go version -m`, was built
# from the pinned module version. A matching binary already on PATH (for example
# in ~/go/bin) is copied instead of rebuilt; otherwise `go install` builds it
# with GOBIN=.bin. Bump a version here and every machine picks it up.
set -euo pipefail

TOOLS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-$TOOLS_ROOT/.bin}"

# name|package to install|module whose version is pinned|version
TOOLS_PINNED=(
	"buf|github.com/bufbuild/buf/cmd/buf|github.com/bufbuild/buf|v1.75.0"
	"protoc-gen-go|google.golang.org/protobuf/cmd/protoc-gen-go|google.golang.org/protobuf|v1.36.12"
	"protoc-gen-go-grpc|google.golang.org/grpc/cmd/protoc-gen-go-grpc|google.golang.org/grpc/cmd/protoc-gen-go-grpc|v1.6.0"
	"protoc-gen-grpc-gateway|github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway|github.com/grpc-ecosystem/grpc-gateway/v2|v2.33.0"
	"protoc-gen-openapiv2|github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2|github.com/grpc-ecosystem/grpc-gateway/v2|v2.33.0"
	"grpcurl|github.com/fullstorydev/grpcurl/cmd/grpcurl|github.com/fullstorydev/grpcurl|v1.9.4"
	# The SMTP server of the interoperability tests (pkg/testkit/mailservers).
	"mailpit|github.com/axllent/mailpit|github.com/axllent/mailpit|v1.33.1"
	# The version pkg/go.mod embeds (natsembed, natstest); scripts/cluster.sh runs it.
	"nats-server|github.com/nats-io/nats-server/v2|github.com/nats-io/nats-server/v2|v2.15.3"
)

# tool_has_version BIN MODULE VERSION: true when BIN was built from MODULE@VERSION.
tool_has_version() {
	local bin="$1" mod="$2" ver="$3"
	[[ -x "$bin" ]] || return 1
	go version -m "$bin" 2>/dev/null | awk -v m="$mod" -v v="$ver" '
		$1 == "mod" && $2 == m && $3 == v { found = 1 }
		END { exit found ? 0 : 1 }'
}

# ensure_tool NAME: make sure .bin/NAME is the pinned version.
ensure_tool() {
	local want="$1" line name pkg mod ver other
	for line in "${TOOLS_PINNED[@]}"; do
		IFS='|' read -r name pkg mod ver <<<"$line"
		[[ "$name" == "$want" ]] || continue
		mkdir -p "$TOOLS_BIN"
		if tool_has_version "$TOOLS_BIN/$name" "$mod" "$ver"; then
			return 0
		fi
		other="$(PATH="$(tools_path_without_bin)" command -v "$name" 2>/dev/null || true)"
		if [[ -n "$other" ]] && tool_has_version "$other" "$mod" "$ver"; then
			echo "tools: $name $ver: copying $other into ${TOOLS_BIN#"$TOOLS_ROOT"/}/" >&2
			cp "$other" "$TOOLS_BIN/$name.tmp" && mv "$TOOLS_BIN/$name.tmp" "$TOOLS_BIN/$name"
			return 0
		fi
		echo "tools: installing $name $ver into ${TOOLS_BIN#"$TOOLS_ROOT"/}/ (go install $pkg@$ver; the first time can take minutes)" >&2
		# Outside the workspace so go.work and GOFLAGS of the project do not apply.
		(cd / && GOWORK=off GOFLAGS='' GOBIN="$TOOLS_BIN" go install "$pkg@$ver")
		tool_has_version "$TOOLS_BIN/$name" "$mod" "$ver" || {
			echo "tools: $name built but is not $mod $ver" >&2
			return 1
		}
		return 0
	done
	echo "tools: unknown tool $want (known: $(tools_names))" >&2
	return 1
}

tools_names() {
	local line
	for line in "${TOOLS_PINNED[@]}"; do printf '%s ' "${line%%|*}"; done
}

# PATH without .bin, to find a copy of a tool installed elsewhere.
tools_path_without_bin() {
	local IFS=: out=() d
	for d in $PATH; do [[ "$d" == "$TOOLS_BIN" ]] || out+=("$d"); done
	printf '%s' "${out[*]}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	if [[ $# -eq 0 ]]; then
		# shellcheck disable=SC2046
		set -- $(tools_names)
	fi
	for t in "$@"; do ensure_tool "$t"; done
fi
