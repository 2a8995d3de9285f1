#!/usr/bin/env bash
# The GPU checks of issue 6, as one prepared script for a lent CUDA machine (about 6 minutes):
#   1. the CUDA path end to end through the CLI on SQLite: init, quick worker, promote, full
#      worker, export, `sarsweep train` of the exported YAML, and `sarsweep evaluate` of its
#      best.pt on the GPU (bf16), which should repeat the val figures train printed;
#   2. bench/trial_overhead.py at 256x256 on the GPU (residual, base 64);
#   3. bench/gpu_speed.py: fp32 eager vs bf16 + channels_last, with each step's host issue time,
#      and bf16 under CUDA graphs (--graphs). Two earlier H100 runs timed plain torch.compile
#      (docs/benchmarks.md); the open question is whether the small variants are launch-bound.
# Outputs land in $OUT (default /tmp/sarsweep-gpu-check). Needs the project's imports on
# PYTHONPATH; wheels in .whl/ (optuna and what it needs) are installed first when present.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/sarsweep-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -z "${SKIP_WHEELS:-}" ] && compgen -G "$REPO/.whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$REPO"/.whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export SARSWEEP_CACHE=/tmp/sarsweep-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, optuna; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'optuna', optuna.__version__)"

echo "== 1. CUDA path end to end (SQLite)"
WORK=$(mktemp -d) && cd "$WORK"
export SARSWEEP_ARTIFACTS="$WORK/artifacts"
S=(--campaign "$REPO/bench/gpu_campaign.yaml" --storage "sqlite:///$WORK/gpu.db")
sar() { python3 -m search.cli "$@"; }
t0=$(date +%s)
sar init "${S[@]}" && sar worker "${S[@]}" --variant residual --stage quick && sar promote "${S[@]}" \
  && sar worker "${S[@]}" --variant residual --stage full && sar export "${S[@]}" --variant residual -o best.yaml \
  && sed -i "s#^out_dir: .*#out_dir: $WORK/retrain#" best.yaml && sar train --config best.yaml \
  && sar evaluate --checkpoint "$WORK/retrain/best.pt" --device cuda --json "$OUT/e2e_evaluate.json" \
  && sar status "${S[@]}"
echo "end-to-end rc=$? in $(( $(date +%s) - t0 )) s"
python3 - "$WORK/gpu.db" <<'PY' | tee "$OUT/e2e_trials.txt"
import sys, optuna
for s in optuna.get_all_study_summaries(f"sqlite:///{sys.argv[1]}"):
    for t in optuna.load_study(study_name=s.study_name, storage=f"sqlite:///{sys.argv[1]}").trials:
        c = t.user_attrs.get("config", {})
        print(s.study_name, t.number, t.state.name, round(t.value or 0, 3), t.user_attrs.get("device"),
              c.get("precision"), "epochs s:", [e["seconds"] for e in t.user_attrs.get("epochs", [])])
PY
cp best.yaml "$OUT/e2e_best.yaml" 2>/dev/null
cd "$REPO"

echo "== 2. trial overhead on the GPU"
python3 bench/trial_overhead.py --variant residual --base 64 --patch 256 --scene 512 --batch 16 --epochs 3 \
    --train-patches 384 --val-patches 128 2>&1 | grep -v "^\[I " | tee "$OUT/trial_overhead.txt"

echo "== 3. gpu_speed"
timeout 330 python3 bench/gpu_speed.py --graphs --json "$OUT/gpu_speed.json" 2>&1 | tee "$OUT/gpu_speed.txt"
