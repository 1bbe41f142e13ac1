#!/usr/bin/env bash
# Testing on a Slurm cluster (the OpenMMLab form):
#   GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]
# GPUS (default 8) processes, GPUS_PER_NODE (default 8) per node, CPUS_PER_TASK
# (default 5) cores each; SRUN_ARGS are passed to srun (see slurm_launch.sh).
DIR="$(cd "$(dirname "$0")" && pwd)"
exec bash "$DIR/slurm_launch.sh" "$1" "$2" test.py \
    "$3" "$4" --launcher=slurm "${@:5}"
