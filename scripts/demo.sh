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
.venv/bin/bertkit predict "$OUT" --input examples/sst2_sentences.csv | .venv/bin/python -c "
import csv, json, sys
texts = [row['sentence'] for row in csv.DictReader(open('examples/sst2_sentences.csv'))]
for text, line in zip(texts, sys.stdin):
    p = json.loads(line)
    print(f\"  {p['label']:<9} {p['score']:.3f}  {text}\")"
echo "demo wall time: $(( $(date +%s) - start )) s; run directory: $OUT"
