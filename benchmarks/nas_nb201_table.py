"""Convert the NATS-Bench topology-space accuracy CSV into the package's table.

Writes ``mmcompress/nas/tables/nb201_acc.npz``: ``codes`` (15625, 6) uint8 op indices
in NB201 edge order and ``acc`` (15625, 3) float64 test accuracies (CIFAR-10,
CIFAR-100, ImageNet16-120, 200 epochs, seed-averaged), row i = NATS index i.

    python benchmarks/nas_nb201_table.py \
        --csv /work/shared/data/nasbench201/nats_tss_accuracy.csv
"""

import argparse
import csv
import os.path as osp

import numpy as np

from mmcompress.nas.benchmark_table import TABLE_PATH
from mmcompress.nas.space import parse_nb201


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--csv', required=True, help='nats_tss_accuracy.csv')
    parser.add_argument('--out', default=TABLE_PATH)
    args = parser.parse_args()
    codes, acc = [], []
    with open(args.csv) as f:
        for row in csv.DictReader(f):
            codes.append(parse_nb201(row['ArchitectureString']))
            acc.append(
                [
                    float(row['CIFAR10TestAccuracy200Epochs']),
                    float(row['CIFAR100TestAccuracy200Epochs']),
                    float(row['ImageNetTestAccuracy200Epochs']),
                ]
            )
    codes = np.asarray(codes, dtype=np.uint8)
    if len(codes) != 15625 or len({tuple(c) for c in codes}) != 15625:
        raise ValueError(f'{args.csv}: expected 15625 distinct architectures')
    np.savez_compressed(args.out, codes=codes, acc=np.asarray(acc))
    print(f'wrote {args.out} ({osp.getsize(args.out)} bytes)')


if __name__ == '__main__':
    main()
