# Shell functions shared by remote_cache.sh and remote_exec.sh (sourced, never run).
# The BuildGrid venv gives both their Python with grpcio and the REAPI protos.
REAPI_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

die() {
  echo "${0##*/}: error: $*" >&2
  exit 1
}

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
  key="$( (cat "$REAPI_HOME/buildgrid-requirements.txt"; "$python" -VV) | sha256sum | cut -c1-16)"
  root="${XDG_CACHE_HOME:-$HOME/.cache}/cacheplug/buildgrid"
  venv="$root/venv-$key"
  if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$root"
    tmp="$(mktemp -d "$root/.tmp.XXXXXX")"
    "$python" -m venv "$tmp" >&2
    # pip ships its own CA list: use the bundle Pants is told about, if any (a TLS-re-signing proxy).
    "$tmp/bin/pip" install -q --disable-pip-version-check ${PANTS_CA_CERTS_PATH:+--cert "$PANTS_CA_CERTS_PATH"} \
      -r "$REAPI_HOME/buildgrid-requirements.txt" >"$tmp.log" 2>&1 || { cat "$tmp.log" >&2; rm -rf "$tmp" "$tmp.log"; die "installing BuildGrid failed"; }
    rm -f "$tmp.log"
    # The venv's Python works from its new path (its scripts would not: we never run them).
    mv -T "$tmp" "$venv" 2>/dev/null || rm -rf "$tmp"
  fi
  echo "$venv"
}

free_port() {  # PYTHON
  "$1" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until PORT on loopback answers while PID lives: up to 60 s. Fails (with the tail of the
# server's LOG if it exited) otherwise; the caller stops what it started.
wait_for_port() {  # NAME PID PORT LOG
  local name="$1" pid="$2" port="$3" log="$4" i
  for i in $(seq 1 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "${0##*/}: error: $name exited before it answered; its log ($log):" >&2
      tail -n 30 "$log" >&2
      return 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "${0##*/}: error: $name did not answer on 127.0.0.1:$port within 60 s" >&2
  return 1
}

# Stops a server started under `timeout` (which leads its own process group): TERM to the group,
# up to 10 s, then KILL to the group, so that a server slow to exit is not left behind.
stop_pid() {  # PID
  kill -TERM -- "-$1" 2>/dev/null || kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$1" 2>/dev/null || true
}
