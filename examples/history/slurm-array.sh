#!/usr/bin/env bash
# One benchmark run per node type, as a Slurm job array; each task writes its results file
# (no database needed on the compute nodes), and collect.sh records them afterwards:
#   jobid=$(sbatch --parsable examples/history/slurm-array.sh)
#   sbatch --dependency=afterany:$jobid examples/history/collect.sh
#SBATCH --job-name=hhbench
#SBATCH --array=0-2
#SBATCH --exclusive
#SBATCH --time=02:00:00
#SBATCH --output=hhbench-%A_%a.log
set -euo pipefail

PARTITIONS=(cpu-epyc cpu-xeon gpu-h100)   # what each array task is meant to measure
DEVICE=(cpu cpu auto)
OUT=${HHBENCH_RESULTS:-$HOME/hhbench-results}
mkdir -p "$OUT"
task=${SLURM_ARRAY_TASK_ID:-0}
commit=$(git rev-parse --short HEAD)

# a PostgreSQL reachable from the nodes could take the run at once instead:
#   hhbench run ... --store "$HHBENCH_STORE"
hhbench run --processes 5 --device "${DEVICE[$task]}" \
    -o "$OUT/${commit}-${PARTITIONS[$task]}-${SLURM_JOB_ID:-local}.json"
