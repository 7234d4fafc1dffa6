#!/usr/bin/env bash
# The GPU check: everything CI cannot run, in one script for a machine with one NVIDIA GPU (< 5 minutes).
#   bash perf/gpu_check.sh [OUT_DIR]        # writes OUT_DIR/gpu_summary.md (default: $OUT or /tmp/rsbench_gpu)
# Steps (each timed, each a line in the summary; a failing step does not stop the others):
#   1. the CUDA test paths: bf16 autocast, SDPA attention, MSSDF masking on the GPU (pytest -m cuda, tests/test_cuda.py)
#   2. a 1-rank NCCL DDP fine-tuning cell (torchrun, rsbench finetune --ddp pytorch)
#   3. a 1-rank NCCL pretraining run (torchrun, rsbench pretrain --ddp pytorch, MAE, 1 epoch of a small pool)
#   4. ViT-B/16 at 320 px, bf16, batch doubled until the GPU is full: samples/s and MFU of MAE and MSSDF steps
# CI never runs this; docs/performance.md records its output whenever a GPU was available.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/rsbench_gpu}}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
SUMMARY="$OUT/gpu_summary.md"
DATA="$OUT/data"
echo "# rsbench GPU check ($(date -u +%FT%TZ))" > "$SUMMARY"
"$PY" -c "import torch; print(f'- device: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}')" >> "$SUMMARY" 2>&1
echo "" >> "$SUMMARY"
echo "| step | status | seconds | output (last line) |" >> "$SUMMARY"
echo "|---|---|---|---|" >> "$SUMMARY"

step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local start=$SECONDS log="$OUT/${name// /_}.log"
  timeout "$limit" "$@" > "$log" 2>&1
  local rc=$?
  local status=$([ $rc -eq 0 ] && echo ok || echo "failed ($rc)")
  local last=$(grep -v '^\s*$' "$log" | tail -n 1 | tr '|' '/' | cut -c 1-200)
  echo "| $name | $status | $((SECONDS - start)) | $last |" >> "$SUMMARY"
  echo "[gpu_check] $name: $status in $((SECONDS - start)) s"
}

PORT=$((20000 + RANDOM % 20000))
step "cuda tests" 120 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/
step "ddp finetune (nccl, 1 rank)" 90 "$PY" -m torch.distributed.run --nproc_per_node=1 --master_port=$PORT \
  -m benchmark.cli finetune --ddp pytorch --task segmentation --backbone random_init_vit_t16 --fraction 0.5 \
  --run-dir "$OUT/ddp_finetune" --dataset-options size=64 n=32 "root=$DATA" \
  --backbone-options img_size=64 patch_size=8 --budget max_iters=20 batch_size=8 warmup_iters=2
step "ddp pretrain (nccl, 1 rank)" 90 "$PY" -m torch.distributed.run --nproc_per_node=1 --master_port=$((PORT + 1)) \
  -m benchmark.cli pretrain configs/pretrain/mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py --ddp pytorch \
  --work-dir "$OUT/ddp_pretrain" --cfg-options train_cfg.max_epochs=1 train_dataloader.dataset.n=128 \
  "train_dataloader.dataset.root=$DATA"
step "vit-b16 320px bf16 throughput" 150 "$PY" perf/gpu_throughput.py --steps 10
cat "$SUMMARY"
