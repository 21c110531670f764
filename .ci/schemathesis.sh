#!/usr/bin/env bash
# Property-based tests of the coordinator's API: schemathesis (pinned, in its own venv)
# generates requests for every operation of the served OpenAPI document and checks every
# answer against it (status codes, content types, headers, bodies; schema-valid input must
# be accepted, invalid input refused). It runs against a fresh `sluice dev` (a coordinator
# and an agent, on free ports, in a temporary directory), bounded in time.
#
# What it does not check, and why, is in .ci/schemathesis/schemathesis.toml (operations
# left out, per-operation expectations) and sluice_hooks.py (rules JSON Schema cannot say:
# a duration's 30-day total, a port range's order, a selector that matches no server).
# Any other check failure fails the run.
#
# Usage: .ci/schemathesis.sh   (after `cargo build`; SLUICE_SCHEMATHESIS_SECONDS bounds it)
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD/.ci/schemathesis
budget=${SLUICE_SCHEMATHESIS_SECONDS:-150}
sluice=${SLUICE_BIN:-$PWD/target/debug/sluice}
[[ -x $sluice ]] || { echo "build first: $sluice is missing" >&2; exit 1; }

work=$(mktemp -d)
dev_pid=
cleanup() {
  if [[ -n $dev_pid ]]; then
    kill "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The venv: schemathesis and everything it imports, at the versions the run was measured
# with (requirements.txt), from PyPI.
venv=${SLUICE_SCHEMATHESIS_VENV:-$work/venv}
if [[ ! -x $venv/bin/schemathesis ]]; then
  python3 -m venv "$venv" 2>/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
agent_port=$(free_port)
"$sluice" dev --dir "$work/dev" --port "$port" --agent-port "$agent_port" \
  --port-range 28100-28199 </dev/null >"$work/dev.log" 2>&1 &
dev_pid=$!

base=https://127.0.0.1:$port
ca=$work/dev/tls/ca.pem
for _ in $(seq 1 60); do
  if [[ -s $work/dev/admin.token ]] && curl -sf --cacert "$ca" \
    -H "Authorization: Bearer $(cat "$work/dev/admin.token")" "$base/v1/servers/local" >/dev/null; then
    break
  fi
  kill -0 "$dev_pid" 2>/dev/null || { echo "sluice dev exited:" >&2; tail -20 "$work/dev.log" >&2; exit 1; }
  sleep 1
done
token=$(cat "$work/dev/admin.token")

started=$(date +%s)
status=0
PYTHONPATH=$here SCHEMATHESIS_HOOKS=sluice_hooks "$venv/bin/schemathesis" \
  --config-file "$here/schemathesis.toml" run "$base/v1/openapi.json" \
  --url "$base" --tls-verify "$ca" -H "Authorization: Bearer $token" \
  --checks all --max-examples 100 --seed 1 --request-timeout 20 --generation-database none \
  --max-time "$budget" --no-color --report junit --report-dir target/schemathesis || status=$?
echo "schemathesis: exit $status after $(($(date +%s) - started)) s (budget ${budget} s)"
exit "$status"
