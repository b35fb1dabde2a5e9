#!/usr/bin/env bash
# Short CPU training sanity benchmark: a small network trained on T91 (experiment=drn_t91_cpu:
# DRN x4; EXPERIMENT=drrn_t91_cpu SCALE=3: DRRN, scored at x3), then Set5 Y-PSNR/SSIM of bicubic
# and of the trained network with scripts/evaluate.py.
#
#   benchmarks/t91_cpu.sh [extra Hydra overrides for the training, e.g. seed=2]
#   EXPERIMENT=drrn_t91_cpu SCALE=3 benchmarks/t91_cpu.sh
#
# Environment:
#   EXPERIMENT         training experiment (default drn_t91_cpu)
#   SCALE              evaluation scale (default 4)
#   SR_ADAPT_DATA_DIR  data root holding train/T91 and benchmarks/Set5 (default /work/shared/data)
#   OUT                output folder (default /tmp/sr_adapt_t91_cpu_<date>)
#   PYTHON             interpreter with sr_adapt installed (default: python)
#   TARGET_DB          required gain over bicubic in dB (default 0.5); exit status 1 below it
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${SR_ADAPT_DATA_DIR:-/work/shared/data}"
OUT="${OUT:-/tmp/sr_adapt_t91_cpu_$(date +%Y%m%d_%H%M%S)}"
PYTHON="${PYTHON:-python}"
TARGET_DB="${TARGET_DB:-0.5}"
EXPERIMENT="${EXPERIMENT:-drn_t91_cpu}"
SCALE="${SCALE:-4}"
mkdir -p "$OUT"

echo "data: $DATA_DIR  output: $OUT  load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
start=$(date +%s.%N)
"$PYTHON" scripts/train.py experiment="$EXPERIMENT" paths.data_dir="$DATA_DIR" hydra.run.dir="$OUT/train" "$@" \
    > "$OUT/train.stdout" 2>&1 || { tail -n 40 "$OUT/train.stdout"; echo "training failed (log: $OUT/train.stdout)"; exit 2; }
end=$(date +%s.%N)
train_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
echo "training wall time: ${train_s} s ($(awk -v s="$train_s" 'BEGIN { printf "%.1f", s / 60 }') min), load average now: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"

STEPS=$("$PYTHON" -c "
import json; print(json.load(open('$OUT/train/metrics.json'))['global_step'])")
CKPT="$OUT/train/checkpoints/last.ckpt"  # the final weights (no selection on Set5)

"$PYTHON" scripts/evaluate.py model=bicubic scale="$SCALE" paths.data_dir="$DATA_DIR" benchmarks=[set5] \
    output="$OUT/bicubic.json" hydra.run.dir="$OUT/eval_bicubic" > "$OUT/eval_bicubic.stdout" 2>&1
"$PYTHON" scripts/evaluate.py ckpt_path="$CKPT" scale="$SCALE" paths.data_dir="$DATA_DIR" benchmarks=[set5] \
    output="$OUT/net.json" hydra.run.dir="$OUT/eval_net" > "$OUT/eval_net.stdout" 2>&1

"$PYTHON" - "$OUT" "$train_s" "$STEPS" "$SCALE" "$TARGET_DB" <<'EOF'
import json, sys
out, train_s, steps, scale, target = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
bic = json.load(open(f"{out}/bicubic.json"))["results"]["Set5"]
net = json.load(open(f"{out}/net.json"))
res = net["results"]["Set5"]
gain = res["psnr"] - bic["psnr"]
print(f"\nSet5 x{scale} (Y channel, shave {scale})        PSNR     SSIM")
print(f"bicubic                           {bic['psnr']:6.2f}  {bic['ssim']:.4f}")
print(f"{net['model']['name']} ({net['model']['params']:,} params), {steps} steps, "
      f"{train_s / 60:.1f} min: {res['psnr']:6.2f}  {res['ssim']:.4f}")
print(f"gain over bicubic: {gain:+.2f} dB (target >= +{target:.2f} dB): {'PASS' if gain >= target else 'FAIL'}")
json.dump({"train_wall_s": train_s, "steps": int(steps), "scale": int(scale), "model": net["model"]["name"],
           "bicubic": {k: bic[k] for k in ("psnr", "ssim")}, "net": {k: res[k] for k in ("psnr", "ssim")},
           "params": net["model"]["params"], "gain_db": gain},
          open(f"{out}/summary.json", "w"), indent=2)
sys.exit(0 if gain >= target else 1)
EOF
