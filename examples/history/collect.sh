#!/usr/bin/env bash
# Record every results file the array wrote (a file already in the store is skipped), then
# publish the dashboard; run on a node that reaches the store.
#SBATCH --job-name=hhbench-collect
#SBATCH --time=00:20:00
set -euo pipefail
OUT=${HHBENCH_RESULTS:-$HOME/hhbench-results}
STORE=${HHBENCH_STORE:-$OUT/history.db}
shopt -s nullglob
files=("$OUT"/*.json)
if [ ${#files[@]} -eq 0 ]; then
    echo "collect: no results files in $OUT" >&2
    exit 2
fi
hhbench history add --store "$STORE" "${files[@]}"
hhbench history regressions --store "$STORE" || true
hhbench history publish --store "$STORE" -o "$OUT/site"
