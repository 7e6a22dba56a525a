#!/usr/bin/env bash
# The main job: fine-tune the embedded MiniLM-L6 on 20,000 bundled SST-2 sentences, evaluate on the
# 872-sentence dev set, print dev accuracy and a few predictions. Leaves runs/sst2-demo behind.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-runs/sst2-demo-$(date +%Y%m%d-%H%M%S)}
start=$(date +%s)
.venv/bin/bertkit train examples/sst2_demo.yaml --out "$OUT"
.venv/bin/bertkit evaluate "$OUT" --data data/sst2/dev.csv
for s in "a gorgeous , witty , seductive movie ." "the worst film of the year ." \
         "it 's not a masterpiece , but it is never boring ."; do
  printf '%-52s ' "$s"; .venv/bin/bertkit predict "$OUT" --text "$s"
done
echo "demo wall time: $(( $(date +%s) - start )) s; run directory: $OUT"
