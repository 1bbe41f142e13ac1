#!/usr/bin/env bash
# Distributed testing: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
# (NNODES, NODE_RANK, PORT, MASTER_ADDR: see dist_launch.sh).
DIR="$(cd "$(dirname "$0")" && pwd)"
exec bash "$DIR/dist_launch.sh" "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
