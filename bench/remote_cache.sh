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

# shellcheck source=reapi_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/reapi_common.sh"
# `bgd`, run by the venv's Python (the venv is renamed into place, which breaks its scripts).
BGD='import sys; from buildgrid.server.app import cli; sys.argv[0] = "bgd"; sys.exit(cli())'

start() {
  local dir="$1" venv port pid
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
  if ! wait_for_port BuildGrid "$pid" "$port" "$dir/server.log"; then
    stop "$dir"
    exit 1
  fi
  echo "grpc://127.0.0.1:$port"
}

stop() {
  local dir="$1" pid
  [[ -e "$dir/pid" ]] || return 0
  # `timeout` passes the signal on to bgd.
  stop_pid "$(cat "$dir/pid")"
  rm -f "$dir/pid"
}

case "${1:-}" in
  start) [[ $# -eq 2 ]] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start DIR | $0 stop DIR" ;;
esac
