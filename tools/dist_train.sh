#!/usr/bin/env bash
# Distributed training: bash tools/dist_train.sh CONFIG GPUS [train.py args]
# On a machine without GPUs, GPUS processes train on the CPU with the gloo backend
# (NNODES, NODE_RANK, PORT, MASTER_ADDR: see dist_launch.sh).
DIR="$(cd "$(dirname "$0")" && pwd)"
exec bash "$DIR/dist_launch.sh" "$2" train.py "$1" --launcher pytorch "${@:3}"
