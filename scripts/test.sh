#!/usr/bin/env bash
# The test command (README, CI): Redis up if it is not answering, then pytest on the default suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! (redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG); then
  redis-server --daemonize yes --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
exec .venv/bin/python -m pytest "$@"
