#!/usr/bin/env bash
# A real REAPI cache server (BuildGrid) on loopback, for the remote-cache test and benchmark.
#
#   bench/remote_cache.sh start DIR   # prints the address to give Pants, e.g. grpc://127.0.0.1:40123
#   bench/remote_cache.sh stop DIR
#
# `start` installs BuildGrid (the versions pinned in buildgrid-requirements.txt beside this file)
# into its own venv under the user cache dir, once; serves CAS + ActionCache + ByteStream on a free
# loopback port, storing blobs on disk in DIR/storage; waits until the port answers; and leaves
# its pid in DIR/pid and its log in DIR/server.log. `stop` kills it by that pid. A server nobody
# stops ends by itself after $CACHEPLUG_BUILDGRID_MAX_SECONDS (default 3600).
set -euo pipefail

die() {
  echo "remote_cache.sh: error: $*" >&2
  exit 1
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
requirements="$here/buildgrid-requirements.txt"
# `bgd`, run by the venv's Python (the venv is renamed into place, which breaks its scripts).
BGD='import sys; from buildgrid.server.app import cli; sys.argv[0] = "bgd"; sys.exit(cli())'

find_python311() {
  local candidate
  for candidate in "$(command -v python3.11 || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3.11; do
    [[ "$candidate" == */shims/* ]] && continue
    if [[ -x "$candidate" ]]; then echo "$candidate"; return; fi
  done
  return 1
}

# The BuildGrid venv: built in a temp dir beside its final place and renamed there, so concurrent
# starts never use a half-built venv (the loser of the rename throws its copy away).
buildgrid_venv() {
  local python key root venv tmp
  python="$(find_python311)" || die "BuildGrid needs CPython 3.11 (python3.11 on PATH or under pyenv)"
  key="$( (cat "$requirements"; "$python" -VV) | sha256sum | cut -c1-16)"
  root="${XDG_CACHE_HOME:-$HOME/.cache}/cacheplug/buildgrid"
  venv="$root/venv-$key"
  if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$root"
    tmp="$(mktemp -d "$root/.tmp.XXXXXX")"
    "$python" -m venv "$tmp" >&2
    # pip ships its own CA list: use the bundle Pants is told about, if any (a TLS-re-signing proxy).
    "$tmp/bin/pip" install -q --disable-pip-version-check ${PANTS_CA_CERTS_PATH:+--cert "$PANTS_CA_CERTS_PATH"} \
      -r "$requirements" >"$tmp.log" 2>&1 || { cat "$tmp.log" >&2; rm -rf "$tmp" "$tmp.log"; die "installing BuildGrid failed"; }
    rm -f "$tmp.log"
    # The venv's Python works from its new path (its scripts would not: we never run them).
    mv -T "$tmp" "$venv" 2>/dev/null || rm -rf "$tmp"
  fi
  echo "$venv"
}

free_port() {  # PYTHON
  "$1" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir="$1" venv port pid i
  mkdir -p "$dir/storage"
  dir="$(cd "$dir" && pwd -P)"
  [[ -e "$dir/pid" ]] && die "$dir/pid exists: a server may be running; stop it first"
  venv="$(buildgrid_venv)"
  port="$(free_port "$venv/bin/python")"
  cat >"$dir/buildgrid.yml" <<EOF
server:
  - !channel
    address: "127.0.0.1:$port"
    insecure-mode: true
# gRPC threads: the default, 5 per core, refuses Pants' concurrent uploads ("Concurrent RPC limit
# exceeded") on a small machine.
thread-pool-size: 128
storages:
  - !disk-storage &storage
    path: "$dir/storage"
caches:
  - !lru-action-cache &action-cache
    storage: *storage
    max-cached-refs: 1000000
    allow-updates: true
    cache-failed-actions: true
instances:
  - name: ""
    services:
      - !action-cache
        cache: *action-cache
      - !cas
        storage: *storage
      - !bytestream
        storage: *storage
EOF
  timeout "${CACHEPLUG_BUILDGRID_MAX_SECONDS:-3600}" "$venv/bin/python" -c "$BGD" server start "$dir/buildgrid.yml" \
    >"$dir/server.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  for i in $(seq 1 600); do  # up to 60 s
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$dir/pid"
      die "BuildGrid exited before it answered; its log ($dir/server.log):
$(tail -n 30 "$dir/server.log")"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "grpc://127.0.0.1:$port"
      return
    fi
    sleep 0.1
  done
  stop "$dir"
  die "BuildGrid did not answer on 127.0.0.1:$port within 60 s"
}

stop() {
  local dir="$1" pid
  [[ -e "$dir/pid" ]] || return 0
  pid="$(cat "$dir/pid")"
  # `timeout` passes the signal on to bgd.
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/pid"
}

case "${1:-}" in
  start) [[ $# -eq 2 ]] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start DIR | $0 stop DIR" ;;
esac
