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
# Debian packages the tests and `loom up --postgres` use, installed in one apt step where missing:
# - chromium: the browser tests of the pages (pip's playwright drives it; Playwright's own browser
#   download is not available on these machines);
# - opencv-doc: real film footage for the corpus of real-world recordings (testkit/footage.py:
#   Megamind.avi, MPEG-4 Part 2 + AC3 in AVI);
# - postgresql: `loom up --postgres` (its test and benchmark).
FOOTAGE=/usr/share/doc/opencv-doc/examples/data/Megamind.avi
packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
install_apt() {
  apt-get update -qq || return 1
  if [ ${#packages[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" || return 1
  fi
  if [ ! -f "$FOOTAGE" ]; then  # its recommends are web assets of the docs, not needed here
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends opencv-doc || return 1
  fi
}
if [ ${#packages[@]} -gt 0 ] || [ ! -f "$FOOTAGE" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    for try in 1 2 3 4 5 6; do  # another apt may hold the dpkg lock for a while
      if install_apt >/dev/null; then
        break
      fi
      sleep 20
    done
  else
    echo "warning: missing ${packages[*]} opencv-doc (as root: apt-get install -y ${packages[*]} opencv-doc); the tests need them" >&2
  fi
fi
echo "better-loom is installed: .venv/bin/loom --help" >&2
