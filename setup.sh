#!/usr/bin/env bash
# Set up better-loom in ./.venv on a fresh machine: Python >= 3.11 and pip are all it needs.
# FFmpeg (PyAV, imageio-ffmpeg), espeak-ng (espeakng-loader), fonts (Noto) and OpenCV come from pip.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# The CPU build of torch first: a bare 'torch' requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# A stale egg-info in the checkout would shadow the installed metadata (and with it the plugin
# entry points) for anything run from here: the editable install writes its own.
rm -rf better_loom.egg-info
.venv/bin/python -m pip install --quiet -e ".[test]"
# An editable install leaves the project's modules uncompiled; where PYTHONDONTWRITEBYTECODE is set
# (as in many containers) every `loom` process would compile them again (~0.3 s per start).
.venv/bin/python -m compileall -q loom app tasks flows blocks >/dev/null
# `loom up --postgres` (its benchmark and test) runs Debian's PostgreSQL: install it where missing.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL is missing (for loom up --postgres): sudo apt-get install postgresql" >&2
  fi
fi
echo "better-loom is installed: .venv/bin/loom --help" >&2
