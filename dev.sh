#!/usr/bin/env bash
# Set up (virtualenv + dependencies) and then serve or test. Safe to run again: set-up steps are skipped when
# their inputs have not changed.
#   ./dev.sh serve [main.py serve options]   set up, write the demo checkpoint if no checkpoint exists, serve
#   ./dev.sh test  [pytest options]          set up with test extras (and the browser), run the whole suite
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
TORCH_VERSION=2.13.0   # the CPU build on these machines' disk; pyproject allows users newer releases

setup_python() {
  local extras=$1 stamp="$VENV/.installed-$1"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION"
    "$VENV/bin/pip" install --quiet -e ".[$extras]"
    touch "$stamp"
  fi
}

# spandrel (upscale models) for the tests, without its torchvision requirement: PyPI has only CUDA builds of
# torchvision, which cannot be imported with the CPU torch; the tests build no architecture that needs it.
setup_spandrel() {
  if ! "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('spandrel') is None)"; then
    "$VENV/bin/pip" install --quiet --no-deps "spandrel>=0.4"
  fi
}

# ComfyUI's frontend as ComfyUI 0.3.64 pins it, for the browser tests (tests/web/test_official_frontend.py); the
# newest release comes with the test extra. pip holds one version per environment, so this one goes to a folder.
COMFYUI_064_FRONTEND=1.27.10
setup_frontends() {
  local target=".frontends/comfyui-frontend-package-$COMFYUI_064_FRONTEND"
  if [ ! -f "$target/comfyui_frontend_package/static/index.html" ]; then
    "$VENV/bin/pip" install --quiet --no-deps --target "$target" "comfyui-frontend-package==$COMFYUI_064_FRONTEND"
  fi
}

setup_web() {
  if [ -x web/setup.sh ]; then
    web/setup.sh "$@"
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  serve)
    setup_python serve
    setup_web
    exec "$VENV/bin/python" main.py serve --demo-if-empty "$@"
    ;;
  test)
    setup_python test
    setup_spandrel
    setup_web --with-browser
    setup_frontends
    export HF_HUB_OFFLINE=1
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: ./dev.sh serve|test [options]" >&2
    exit 64
    ;;
esac
