#!/usr/bin/env bash
# The main job: fine-tune the embedded MiniLM-L6 on 20,000 bundled SST-2 sentences, evaluate on the
# 872-sentence dev set (the best dev checkpoint is kept), print dev accuracy and a few predictions.
# Leaves its run directory in runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-runs/sst2-demo-$(date +%Y%m%d-%H%M%S)}
start=$(date +%s)
.venv/bin/bertkit train examples/sst2_demo.yaml --out "$OUT"
echo "predictions:"
paste -d '\t' <(tail -n +2 examples/sst2_sentences.csv) \
  <(.venv/bin/bertkit predict "$OUT" --input examples/sst2_sentences.csv \
    | .venv/bin/python -c "import json,sys; [print(d['label'], round(d['score'], 3)) for d in map(json.loads, sys.stdin)]")
echo "demo wall time: $(( $(date +%s) - start )) s; run directory: $OUT"
