#!/usr/bin/env bash
# The GPU measurements of issue 6, for the project's device machine: one NVIDIA GPU,
# Python 3.12 with JAX and PyTorch (CUDA), no TensorFlow, no internet.
#
#   benchmarks/gpu.sh versions  devices and versions (seconds)
#   benchmarks/gpu.sh check     versions, and a short digits run on JAX + bf16
#                               with TensorFlow absent (about 2 min)
#   benchmarks/gpu.sh resnet9   the ResNet-9-like point: archsearch vs bare Keras vs
#                               PyTorch (bf16, channels_last, torch.compile), EPOCHS=20;
#                               TRACE=DIR adds a JAX profiler trace of 20 archsearch steps, brought
#                               back as resnet9_gpu_trace.json.gz with its summary, resnet9_gpu_trace.txt;
#                               SPE=N trains both Keras paths with Keras's steps_per_execution=N
#                               (files resnet9_gpu_speN.*); WAIT=1 makes Keras wait for every step
#                               on the host, as before 2026-11-25 (files *_wait.*); NO_PEER=1 leaves
#                               PyTorch out (WAIT and NO_PEER: any non-empty value)
#   benchmarks/gpu.sh search    the bundled cifar space for MINUTES=8 of wall time, then
#                               trials per GPU-hour, compile share, achieved TFLOP/s
#   benchmarks/gpu.sh cifar10   the bundled cifar10_gpu space (search, retraining, export) for at
#                               most MINUTES=9; call it again, carrying .runs, to resume the run:
#                               each call brings back .runs (weights left out) as cifar10_run.tgz,
#                               to unpack here before the next call (tar xzf ... in the repo root)
#
# To rehearse on a CPU: `LIMIT=60 EPOCHS=2 benchmarks/gpu.sh resnet9` (images per class),
# `SPACE=digits MINUTES=1 benchmarks/gpu.sh search ""`.
#
# Each step fits in one device call (10 minutes at most) and writes at most 8 files to
# $OUT (default results/bench/gpu). Before the first call, here:
#   bash benchmarks/fetch_wheels.sh                         # Keras and Keras Tuner wheels into .whl/
#   mkdir -p .data && cp ../shared/data/cifar10-jpg.tar.gz .data/
# then, with the device tool: run `bash benchmarks/gpu.sh STEP` carrying [".whl", ".data"].
set -euo pipefail
step=${1:?usage: benchmarks/gpu.sh versions|check|resnet9|search [CIFAR10_ARCHIVE_OR_FOLDER]}
data=${2-.data/cifar10-jpg.tar.gz}  # "" for a space's own source
out=${OUT:-results/bench/gpu}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 ARCHSEARCH_CACHE_DIR=${ARCHSEARCH_CACHE_DIR:-/tmp/archsearch-cache}

versions() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"
    python3 - <<'EOF'
import importlib.metadata as m, platform, jax
print("python", platform.python_version(), "| devices", jax.devices())
for p in ("keras", "keras-tuner", "jax", "jaxlib", "torch", "numpy", "pandas", "scikit-learn"):
    try: print(p, m.version(p))
    except m.PackageNotFoundError: print(p, "missing")
try:
    import tensorflow  # noqa: F401
    print("tensorflow importable")
except ImportError:
    print("tensorflow absent")
EOF
  } 2>&1 | tee "$out/device.txt"
}

case $step in
versions)
  versions
  ;;
check)
  versions
  python3 -m archsearch run digits --results /tmp/digits --overwrite --mixed-precision \
    --max-trials 4 --top-k 1 --seeds 1 --retrain-epochs 4 2>&1 | tee "$out/check_digits.log"
  cp /tmp/digits/trials.csv "$out/check_digits_trials.csv"
  ;;
resnet9)
  name=resnet9_gpu${SPE:+_spe$SPE}${WAIT:+_wait}  # so that the variants run in one call keep their files apart
  # JAX takes 75% of the GPU's memory at start unless told otherwise; leave PyTorch its share.
  XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45} python3 benchmarks/resnet9.py --data-dir "$data" --epochs "${EPOCHS:-20}" --batch-size 512 --mixed-precision \
    --repeats "${REPEATS:-1}" ${LIMIT:+--limit "$LIMIT" --test-limit "$LIMIT"} ${TRACE:+--trace "$TRACE"} ${SPE:+--steps-per-execution "$SPE"} \
    ${NO_PEER:+--no-peer} ${WAIT:+--wait-every-step} --out "$out/$name.csv" 2>&1 | tee "$out/$name.log"
  if [ -n "${TRACE:-}" ]; then  # $OUT's files come back from two folders down at most: the trace's lies deeper
    trace=$(find "$TRACE" -name '*.trace.json.gz' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-)
    if [ -z "$trace" ]; then
      echo "no trace under $TRACE: the trace is of the second epoch (EPOCHS=2 or more)" >&2
    else
      cp "$trace" "$out/${name}_trace.json.gz"
      ls -l "$out/${name}_trace.json.gz"  # files over 16 MiB do not come back; the summary does
      python3 benchmarks/trace_summary.py "$trace" > "$out/${name}_trace.txt"
    fi
  fi
  ;;
search)
  start=$(date +%s)
  # Stopped at the time limit on purpose: trials.csv is rewritten after every trial.
  timeout --signal=INT "${MINUTES:-8}m" python3 -m archsearch run "${SPACE:-cifar}" ${data:+--data-dir "$data"} \
    --results /tmp/cifar10 --overwrite --mixed-precision 2>&1 | tee "$out/search_gpu.log" || true
  wall=$(( $(date +%s) - start ))
  cp /tmp/cifar10/trials.csv "$out/search_trials.csv"
  cp /tmp/cifar10/run.json "$out/search_run.json"
  [ -f /tmp/cifar10/leaderboard.csv ] && cp /tmp/cifar10/leaderboard.csv "$out/search_leaderboard.csv"
  python3 benchmarks/search_summary.py /tmp/cifar10 --search-seconds "$wall" | tee "$out/search_summary.json"
  ;;
cifar10)
  run=.runs/cifar10_gpu
  resume=$([ -f "$run/run.json" ] && echo --resume || true)
  # Stopped at the time limit on purpose: the next call resumes, losing only the trial or
  # retraining in progress (and a retrained seed 0, whose weights do not travel).
  timeout --signal=INT "${MINUTES:-9}m" python3 -m archsearch run "${SPACE:-cifar10_gpu}" ${data:+--data-dir "$data"} \
    --results "$run" $resume --mixed-precision ${EXTRA:-} 2>&1 | tee "$out/cifar10_$(date +%H%M%S).log" || true
  tar czf "$out/cifar10_run.tgz" --exclude='*.keras' --exclude='saved_model' --exclude='checkpoint*' .runs
  ;;
*)
  echo "unknown step $step: versions, check, resnet9, search or cifar10" >&2; exit 2
  ;;
esac
