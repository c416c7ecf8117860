#!/usr/bin/env bash
# Downloads, into .whl/, the wheels that the GPU machine lacks to run archsearch on JAX:
# it has Python 3.12 with JAX, PyTorch, NumPy, pandas, scikit-learn, h5py, ml-dtypes, rich,
# absl-py, requests, filelock, tabulate, pillow (see .library/device/KINDS.md in this
# workplace), but not Keras, Keras Tuner or their small pure dependencies. Run it here,
# where PyPI is reachable; benchmarks/gpu.sh installs them there with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
# PYTHON=3.11 fetches for this machine's Python instead, to rehearse gpu.sh here on the CPU.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PYTHON:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  keras==3.15.1 keras-tuner==1.4.8 kt-legacy==1.0.5 namex==0.1.0 optree==0.20.0 platformdirs==4.14.7
ls -la .whl
