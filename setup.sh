#!/usr/bin/env bash
# Create .venv (Python 3.12) with the pinned stack, install spokenlm_plugin into it, and the Debian
# packages the synthetic corpus needs (flite, espeak-ng, wordnet-base). Safe to re-run: finished
# steps are skipped.
set -euo pipefail
cd "$(dirname "$0")"

need_debs=()
for p in flite libflite1 espeak-ng wordnet-base; do
  dpkg -s "$p" >/dev/null 2>&1 || need_debs+=("$p")
done
if ((${#need_debs[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup.sh: installing Debian packages: ${need_debs[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_debs[@]}" >/dev/null
fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  PY=$(pyenv which python3.12 2>/dev/null || command -v python3.12 || true)
fi
if [ -z "$PY" ] || ! "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
  echo "setup.sh: error: Python 3.12 not found; install it (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12" >&2
  exit 2
fi

stamp=.venv/.spokenlm-setup
want="$(cat requirements.txt setup.py | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup.sh: .venv is up to date"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 'setuptools<82' wheel
.venv/bin/python -m pip install -q -r requirements.txt
# fairseq-fixed may build from source; building against the torch/numpy above avoids pulling a
# second torch into an isolated build environment.
.venv/bin/python -m pip install -q --no-build-isolation 'fairseq-fixed==0.12.3.1'
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "setup.sh: ready (.venv/bin/spokenlm, .venv/bin/fairseq-train)"
