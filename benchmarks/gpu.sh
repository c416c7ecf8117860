#!/usr/bin/env bash
# The GPU measurements of issue 6, as one script for a machine with an NVIDIA GPU,
# JAX and PyTorch with CUDA, and no TensorFlow (the project's device machine).
#
# Before: build wheels of what that machine lacks, on a machine with pip and the
# internet (see .library/device/README.md in this workplace), into .whl/:
#   keras keras-tuner kt-legacy namex optree ml_dtypes h5py six tabulate platformdirs filelock pandas scikit-learn
# and copy the CIFAR-10 archive into the repository (e.g. .data/cifar10-jpg.tar.gz).
# Then run, from the repository root:  bash benchmarks/gpu.sh .data/cifar10-jpg.tar.gz
set -euo pipefail
data=${1:?usage: benchmarks/gpu.sh CIFAR10_FOLDER_OR_ARCHIVE}
out=${OUT:-results/bench}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

# 1. ResNet-9-like point: archsearch vs bare Keras vs PyTorch (bf16, channels_last, torch.compile).
python3 benchmarks/resnet9.py --data-dir "$data" --epochs 10 --batch-size 512 --mixed-precision \
  --out "$out/resnet9_gpu.csv" | tee "$out/resnet9_gpu.log"

# 2. The search itself: trials per GPU-hour on search_spaces/cifar.py (a 20-trial slice).
start=$(date +%s)
python3 -m archsearch run search_spaces/cifar.py --data-dir "$data" --mixed-precision \
  --max-trials 20 --top-k 1 --seeds 1 --results "$out/cifar10_search" | tee "$out/search_gpu.log"
echo "trials per GPU-hour: $(python3 -c "print(round(20 * 3600 / ($(date +%s) - $start), 1))")" | tee -a "$out/search_gpu.log"
