#!/usr/bin/env bash
# Wheels a GPU machine lacks for bench/gpu.py, downloaded here into gpu-wheels/ (git-ignored) to carry there.
#
# That machine has torch, transformers, accelerate, safetensors, aiohttp, numpy, pillow and scipy; the rest of
# what latentloom imports is fetched here for CPython 3.12 on manylinux x86_64, at the versions this virtualenv
# runs (so both machines run the same diffusers), without dependencies (so torch is never pulled). Then, there:
#
#   pip install --no-index --no-deps gpu-wheels/*.whl && python bench/gpu.py --out "$OUT/gpu-bench.json"
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/work/main/.venv/bin/python}
PACKAGES=(diffusers pydantic pydantic-core annotated-types typing-inspection typing-extensions networkx torchsde
          trampoline importlib-metadata zipp)
pins=()
for package in "${PACKAGES[@]}"; do
    pins+=("$package==$("$PYTHON" -c "import importlib.metadata, sys; print(importlib.metadata.version(sys.argv[1]))" "$package")")
done
mkdir -p gpu-wheels
"$PYTHON" -m pip download --dest gpu-wheels --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "${pins[@]}"
ls -l gpu-wheels
