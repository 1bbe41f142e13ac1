#!/usr/bin/env bash
# Training on a Slurm cluster (the OpenMMLab form):
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
# GPUS (default 8) processes, GPUS_PER_NODE (default 8) per node, CPUS_PER_TASK
# (default 5) cores each; SRUN_ARGS are passed to srun (see slurm_launch.sh). Each
# process reads its rank from Slurm (--launcher slurm; mmengine sets up the
# process group).
DIR="$(cd "$(dirname "$0")" && pwd)"
exec bash "$DIR/slurm_launch.sh" "$1" "$2" train.py \
    "$3" --work-dir="$4" --launcher=slurm "${@:5}"
