#!/usr/bin/env bash
# Start/stop a local standalone Flink cluster (1 JobManager, 1 TaskManager) from the scripts in
# the PyFlink wheel. Thin wrapper around `streamrec cluster`; flags pass through.
#
#   deploy/flink-cluster.sh start [--rest-port 8081] [--slots 2]
#   deploy/flink-cluster.sh status
#   deploy/flink-cluster.sh stop
#   eval "$(deploy/flink-cluster.sh env)"; "$FLINK_BIN" run -m localhost:8081 -py jobs/recommend.py ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${STREAMREC_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
case "${1:-}" in
  start|stop|status|env) exec "$PY" -m streamrec.cli cluster "$@" ;;
  *) echo "usage: $0 start|stop|status|env [flags]   (see: $0 start --help)" >&2; exit 2 ;;
esac
