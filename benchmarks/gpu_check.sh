#!/usr/bin/env bash
# One command to check charrnn on a CUDA GPU, in about 5 minutes (start-up not counted):
#
#   bash benchmarks/gpu_check.sh CORPUS [OUT_DIR]      # CORPUS: Tiny Shakespeare for figures that compare
#
#   1. benchmarks/train_speed.py --device cuda at 2x512 (batch 64 x 128), 3x1024 (128 x 256) and
#      3x1024 at the batch the plan takes for a big corpus on a GPU (512 x 128): charrnn vs the plain
#      cuDNN loop, fp32 and bf16, and the share of the bf16 GEMM peak measured on the spot;
#   2. the test suite with CUDA visible (in the background, beside step 3);
#   3. `charrnn train CORPUS --time 3m` with the defaults: the plan, the validation curve, best vs last;
#   4. resumes of that run: as it is (it says what it will do), and with --epochs one pass further;
#   5. `charrnn sample -n 256` on the GPU: characters per second.
#
# Figures go to stdout and to OUT_DIR/summary.json (default benchmarks/results/gpu_check/). The
# corpus is an argument because a device machine gets the checkout only: copy the corpus into an
# ignored folder that travels with it. SUITE=0 skips step 2; DEVICE=cpu and TIME=20s run the
# plumbing on a machine without a GPU (the figures then mean nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
corpus=${1:?usage: bash benchmarks/gpu_check.sh CORPUS [OUT_DIR]}
out=${2:-benchmarks/results/gpu_check}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
budget=${TIME:-3m}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" NO_COLOR=1 COLUMNS=100
rm -rf "$out" && mkdir -p "$out"
say() { echo "== $*"; }

say "device"
$py - "$device" <<'PY' | tee "$out/device.txt"
import sys, torch
device = sys.argv[1]
if device == "cuda":
    assert torch.cuda.is_available(), "no CUDA device is visible to PyTorch"
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
else:
    print(f"{device} (plumbing check only), torch {torch.__version__}")
PY

say "1. training step vs the plain loop"
shapes=("2 512 64 128" "3 1024 128 256" "3 1024 512 128")
[ "$device" = cpu ] && shapes=("1 64 8 32")
for shape in "${shapes[@]}"; do
    read -r layers hidden batch seq <<<"$shape"
    $py benchmarks/train_speed.py --device "$device" --layers "$layers" --hidden "$hidden" --batch "$batch" \
        --seq "$seq" --seconds "${SPEED_SECONDS:-4}" 2>&1 | tee -a "$out/train_speed.txt"
done

suite_pid=""
if [ "${SUITE:-1}" != 0 ]; then
    say "2. test suite with CUDA visible (background)"
    $py -m pytest -q -n "${SUITE_WORKERS:-8}" -p no:cacheprovider -rf >"$out/suite.txt" 2>&1 &
    suite_pid=$!
fi

say "3. charrnn train CORPUS --time $budget (defaults)"
$py -m charrnn train "$corpus" --time "$budget" --device "$device" --out "$out/run" 2>&1 | grep -v '^step ' \
    | tee "$out/train.txt"
cp "$out/run/metrics.jsonl" "$out/metrics_run.jsonl"  # before the resumes below add to it

say "4. resume: as it is, then one pass further"
$py -m charrnn train --resume "$out/run" -q 2>&1 | tee "$out/resume.txt"
epochs=$($py -c "import json,sys; c=json.load(open(sys.argv[1]))['train_config']; print((c['epochs'] or 0) + 1)" \
    "$out/run/config.json")
$py -m charrnn train --resume "$out/run" --epochs "$epochs" -q 2>&1 | tee -a "$out/resume.txt"
$py -m charrnn verify "$out/run" 2>&1 | tee -a "$out/resume.txt"

say "5. charrnn sample -n 256 on $device"
start=$($py -c 'import time; print(time.perf_counter())')
$py -m charrnn sample -c "$out/run/best.safetensors" -n 256 --length 400 --device "$device" --seed 1 >"$out/samples.txt"
end=$($py -c 'import time; print(time.perf_counter())')
echo "$start $end" >"$out/sample_time.txt"

if [ -n "$suite_pid" ]; then
    wait "$suite_pid"
    echo "suite exit $?" >>"$out/suite.txt"
    tail -n 25 "$out/suite.txt"
fi

say "summary"
$py benchmarks/gpu_summary.py "$out" | tee "$out/summary.txt"
