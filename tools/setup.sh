#!/usr/bin/env bash
# Set up everything flashanim needs on a fresh machine: the system libraries Manim
# builds against (installed with apt-get when running as root, named clearly
# otherwise) and a virtual environment with the Python packages.
#
# Usage: tools/setup.sh [VENV_DIR]      (default: .venv)
set -euo pipefail

VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
SYS_PKGS="libcairo2-dev libpango1.0-dev pkg-config"

say() { printf '[setup] %s\n' "$*"; }

# 1. System libraries (ManimPango and pycairo compile against Cairo and Pango).
if ! pkg-config --exists cairo pangocairo 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: $SYS_PKGS"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $SYS_PKGS >/dev/null
  else
    echo "flashanim setup: Manim needs the system packages: $SYS_PKGS" >&2
    echo "  install them first, e.g.: sudo apt-get install $SYS_PKGS" >&2
    exit 1
  fi
fi

# 1b. A browser for the slide-deck test (Debian's chromium and its driver; the
# test opens the deck offline and steps through it). Optional: the test is skipped
# with its reason where they are missing; installed here when running as root.
BROWSER_PKGS="chromium chromium-driver"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $BROWSER_PKGS (for the slide-deck test)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $BROWSER_PKGS >/dev/null; } \
      || say "could not install $BROWSER_PKGS: the slide-deck browser test will be skipped"
  else
    say "no chromium/chromedriver: the slide-deck browser test will be skipped (sudo apt-get install $BROWSER_PKGS)"
  fi
fi

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# The CPU build of PyTorch: pinned so that pip takes the local CPU wheel where one
# lies (/opt/wheels) instead of pulling a multi-GB CUDA build.
FIND_LINKS=()
[ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)
say "installing PyTorch (CPU build)"
"${PIP[@]}" "${FIND_LINKS[@]}" "torch==2.13.0"
say "installing flashanim and its dependencies (Manim, manim-slides, Triton, pytest)"
"${PIP[@]}" "${FIND_LINKS[@]}" -e ".[dev,slides]"
say "done: $VENV"
