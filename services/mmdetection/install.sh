#!/bin/sh
# Installs this service's requirements into the current Python environment.
#
# mmcv 2.1.0 ships only as a source distribution whose setup.py imports torch and pkg_resources, so
# it cannot be built in pip's isolated build env (whose newest setuptools lacks pkg_resources): install
# torch and the pinned setuptools (<81) first, then build without isolation. pip caches the built
# wheel (`pip cache list mmcv`), so a later install into a fresh env takes seconds, not minutes. The cache key is the sdist's URL, not the torch
# version: after changing torch, run `pip cache remove mmcv` so that mmcv is rebuilt against it.
#
# Environment: MAX_JOBS (parallel compile jobs, default 2); CFLAGS (default "-O2 -g0": without debug
# info the C++ ops compile much faster and the wheel is smaller); FORCE_CUDA=1 to compile the CUDA ops
# too (needs nvcc, e.g. a CUDA "devel" base image) and TORCH_CUDA_ARCH_LIST for the target GPUs.
set -eu
here=$(dirname "$0")
python=${PYTHON:-python}
pins() { grep -E "^($1)==" "$here/requirements.txt"; }
export MAX_JOBS="${MAX_JOBS:-2}" CFLAGS="${CFLAGS:--O2 -g0}"
# shellcheck disable=SC2046
$python -m pip install -q $(pins 'torch|setuptools')
$python -m pip install -q --no-build-isolation $(pins mmcv)
$python -m pip install -q -r "$here/requirements.txt"
