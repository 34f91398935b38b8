#!/usr/bin/env bash
# Installs what LessonFlow needs to run and test, idempotently:
#   ffmpeg/ffprobe, libsqlite3-dev, chromium and postgresql (Debian packages), ONNX Runtime 1.24.1 (from the npm package
#   onnxruntime-node), the Temporal CLI v1.5.1 and the versitygw S3 gateway v1.8.0
#   (go install; tests run the S3 blob store against it), and the models
#   (copied from LESSONFLOW_MODELS_DIR and checked against the sha256 values in
#   models/manifests/*.json). Everything but ffmpeg lands in .tools/ (git-ignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools=${LESSONFLOW_TOOLS_DIR:-$root/.tools}
models_src=${LESSONFLOW_MODELS_DIR:-$root/../shared/models}
ort_version=1.24.1
temporal_version=v1.5.1
versitygw_version=v1.8.0
mkdir -p "$tools/bin" "$tools/lib" "$tools/models"

say() { printf 'setup: %s\n' "$*"; }

# Debian packages: ffmpeg/ffprobe, SQLite's header for the sqlite-vec cgo build, chromium, postgresql.
missing=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
[ -f /usr/include/sqlite3.h ] || missing+=(libsqlite3-dev)
# Headless Chromium for the reviewer page's browser test (integration/review_ui_test.go).
command -v chromium >/dev/null || missing+=(chromium)
# PostgreSQL server binaries: tests start throwaway servers from them (initdb +
# postgres on a unix socket, internal/testenv/postgres.go) for the Postgres
# catalog backend. The package's own cluster and service are not used (nor
# in the way: the test servers listen on no TCP port).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ONNX Runtime shared library, carried inside the npm package.
ort_lib="$tools/lib/libonnxruntime.so.1"
if [ ! -s "$ort_lib" ] || [ "$(cat "$tools/lib/ort.version" 2>/dev/null)" != "$ort_version" ]; then
  say "installing ONNX Runtime $ort_version (npm pack onnxruntime-node)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ort_version" >/dev/null)
  tar -xzf "$tmp"/onnxruntime-node-*.tgz -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  install -m 0644 "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ort_lib.tmp"
  mv "$ort_lib.tmp" "$ort_lib"
  echo "$ort_version" > "$tools/lib/ort.version"
  rm -rf "$tmp"
fi

# Temporal CLI (dev server + Web UI). Newer tags fail `go install`.
# (`go install` builds report version 0.0.0-DEV, hence the marker file.)
if [ ! -x "$tools/bin/temporal" ] || [ "$(cat "$tools/bin/temporal.version" 2>/dev/null)" != "$temporal_version" ]; then
  say "installing Temporal CLI $temporal_version (go install)"
  GOBIN="$tools/bin" go install "github.com/temporalio/cli/cmd/temporal@$temporal_version"
  echo "$temporal_version" > "$tools/bin/temporal.version"
fi

# versitygw: a real S3 service (Apache-2.0) over a directory, for the S3 blob
# store's tests. Not used by `make run`.
if [ ! -x "$tools/bin/versitygw" ] || [ "$(cat "$tools/bin/versitygw.version" 2>/dev/null)" != "$versitygw_version" ]; then
  say "installing versitygw $versitygw_version (go install)"
  GOBIN="$tools/bin" go install "github.com/versity/versitygw/cmd/versitygw@$versitygw_version"
  echo "$versitygw_version" > "$tools/bin/versitygw.version"
fi

# Models: copied, never committed; the manifests hold the expected sha256.
for manifest in "$root"/models/manifests/*.json; do
  file=$(sed -n 's/^ *"file": *"\([^"]*\)".*/\1/p' "$manifest" | head -1)
  want=$(sed -n 's/^ *"sha256": *"\([0-9a-f]*\)".*/\1/p' "$manifest" | head -1)
  dst="$tools/models/$file"
  if [ -s "$dst" ] && [ "$(sha256sum "$dst" | cut -d' ' -f1)" = "$want" ]; then
    continue
  fi
  if [ ! -s "$models_src/$file" ]; then
    echo "setup: model $file not found in $models_src." >&2
    echo "setup: set LESSONFLOW_MODELS_DIR to a folder holding it (see README, 'Models')." >&2
    exit 1
  fi
  got=$(sha256sum "$models_src/$file" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    echo "setup: $models_src/$file has sha256 $got, expected $want (models/manifests/$(basename "$manifest"))" >&2
    exit 1
  fi
  say "copying model $file"
  cp "$models_src/$file" "$dst.tmp" && mv "$dst.tmp" "$dst"
done
say "ready (.tools: $tools)"
