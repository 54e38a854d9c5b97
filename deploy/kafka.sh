#!/usr/bin/env bash
# Start/stop a local single-node Apache Kafka broker (KRaft). Thin wrapper around `streamrec kafka`.
#
#   deploy/kafka.sh start [--port 9092] [--data-dir .runtime/kafka]
#   deploy/kafka.sh status [--data-dir DIR]
#   deploy/kafka.sh stop [--data-dir DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${STREAMREC_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
case "${1:-}" in
  start|stop|status) exec "$PY" -m streamrec.cli kafka "$@" ;;
  *) echo "usage: $0 start|stop|status [flags]   (see: $0 start --help)" >&2; exit 2 ;;
esac
