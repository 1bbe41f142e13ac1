#!/usr/bin/env bash
# Runs one of this folder's Python tools on a Slurm cluster (the OpenMMLab form);
# the shared part of slurm_train.sh and slurm_test.sh:
#   bash tools/slurm_launch.sh PARTITION JOB_NAME SCRIPT [SCRIPT args]
# GPUS (default 8) processes, GPUS_PER_NODE (default 8) per node, CPUS_PER_TASK
# (default 5) cores each; SRUN_ARGS are passed to srun. SCRIPT (e.g. train.py)
# gets the remaining arguments; each process reads its rank from Slurm when they
# include --launcher=slurm (mmengine sets up the process group).
set -x

PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
DIR="$(cd "$(dirname "$0")" && pwd)"
PYTHON=${PYTHON:-python}

PYTHONPATH="$DIR/..":$PYTHONPATH \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    --gres=gpu:${GPUS_PER_NODE} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$DIR/$SCRIPT" "${@:4}"
