#!/usr/bin/env bash
# Issue 15, item 4 (and issue 14's time ratio) on a GPU in one call: the host reads per batch, the subproblem
# benchmark (torch on the GPU against L-BFGS-B on the CPU), Fig. 2's batched runs (the fast default against Adam
# and SGD, epoch by epoch in turn, so the s/epoch ratios come from one run) and one LeNet-5 epoch of the Adam
# W-steps against Adam. Each table goes to a file under OUT and to the screen.
#
#   bash benchmarks/gpu_report.sh DATA_DIR OUT            # DATA_DIR: the four MNIST IDX files (.gz or raw)
#   DEVICE=cpu bash benchmarks/gpu_report.sh - OUT --quick  # smoke scale, the shipped subset, on the CPU
#
# DEVICE (default cuda) is the torch device of every run. --quick: small sizes, one or two epochs, the shipped
# MNIST subset (DATA_DIR "-": also without --quick), no L-BFGS-B run longer than 20 s.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: bash benchmarks/gpu_report.sh DATA_DIR OUT [--quick]" >&2
    exit 2
fi
DATA=$1
OUT=$2
QUICK=${3:-}
DEVICE=${DEVICE:-cuda}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT"

python - "$DEVICE" > "$OUT/device.txt" <<'EOF'
import platform, sys, torch
dev = sys.argv[1]
name = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else platform.processor() or platform.machine()
print(f"device {dev}: {name}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads")
EOF
cat "$OUT/device.txt"

if [[ $QUICK == --quick ]]; then
    SIZES=(--sizes 12x40 30x100 --lbfgs-cap 20)
    FIG2=(--epochs 2 --n-train 2000 --n-test 500)
    LENET=(--n-train 1000 --n-test 500)
else
    SIZES=(--lbfgs-cap 900)
    FIG2=(--epochs 10)
    LENET=()
fi
DATA_ARGS=()
LENET_DATA=(--dataset mnist-small)
if [[ $DATA != - ]]; then
    DATA_ARGS=(--data-dir "$DATA")
    LENET_DATA=(--dataset mnist --data-dir "$DATA")
fi

python "$HERE/host_syncs.py" --device "$DEVICE" | tee "$OUT/host_syncs.txt"
python "$HERE/bench_subproblems.py" --device "$DEVICE" --no-cvxpy --repeats 5 "${SIZES[@]}" \
    | tee "$OUT/subproblems.txt"
python "$HERE/bench_training.py" "${DATA_ARGS[@]}" --device "$DEVICE" --parts a --interleave --no-progress \
    --runs fenchel-default,adam,sgd-lr0.1 "${FIG2[@]}" --out "$OUT/fig2" | tee "$OUT/fig2.txt"
python "$HERE/bench_lenet.py" "${LENET_DATA[@]}" "${LENET[@]}" --device "$DEVICE" --epochs 1 --parts full \
    --runs fenchel-adam,adam --no-progress --out "$OUT/lenet" | tee "$OUT/lenet.txt"
