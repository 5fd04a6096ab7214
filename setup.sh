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
# The browser tests (share, campaign and Prefect UI pages) drive Debian's Chromium through the pip
# playwright's driver: Playwright's own browser download is not available on these machines.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: chromium is missing (as root: apt-get install -y chromium); the browser tests need it" >&2
  fi
fi
# An editable install leaves the project's modules uncompiled; where PYTHONDONTWRITEBYTECODE is set
# (as in many containers) every `loom` process would compile them again (~0.3 s per start).
.venv/bin/python -m compileall -q loom app tasks flows blocks >/dev/null
# Real film footage for the tests' corpus of real-world recordings (testkit/footage.py): OpenCV's
# sample data from Debian's opencv-doc (Megamind.avi: a film clip, MPEG-4 Part 2 + AC3 in AVI).
FOOTAGE=/usr/share/doc/opencv-doc/examples/data/Megamind.avi
if [ ! -f "$FOOTAGE" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  for try in 1 2 3 4 5 6; do  # another apt may hold the dpkg lock for a while
    if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends opencv-doc; } >/dev/null; then
      break
    fi
    sleep 20
  done
fi
[ -f "$FOOTAGE" ] || echo "warning: $FOOTAGE is missing (apt-get install opencv-doc, as root)" >&2
echo "better-loom is installed: .venv/bin/loom --help" >&2
