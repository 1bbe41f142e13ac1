#!/usr/bin/env bash
# Runs one of this folder's Python tools in GPUS processes with torch.distributed.run;
# the shared part of dist_train.sh and dist_test.sh:
#   bash tools/dist_launch.sh GPUS SCRIPT [SCRIPT args]
# NNODES, NODE_RANK, PORT and MASTER_ADDR set up a multi-node run. On a machine
# without GPUs the processes run on the CPU with the gloo backend.
GPUS=$1
SCRIPT=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
DIR="$(cd "$(dirname "$0")" && pwd)"
PYTHON=${PYTHON:-python}

PYTHONPATH="$DIR/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes=$NNODES --node_rank=$NODE_RANK --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS --master_port=$PORT \
    "$DIR/$SCRIPT" "${@:3}"
