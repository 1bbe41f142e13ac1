"""Trains a toy DistillModel with 2-process DDP; run by test_ddp.py via
``torchrun --nproc_per_node 2 ddp_toy_run.py WORK_DIR TEACHER_CKPT``.

Writes ``rank{r}.pt`` with a the trained parameters and the teacher state
so the test can check that ranks agree and the teacher did not change.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.runner import Runner

sys.path.insert(0, str(Path(__file__).parent))
from test_student_checkpoint import ToyDataset, _model_cfg  # noqa: E402

import mmcompress  # noqa: E402,F401


def main(work_dir: str, teacher_path: str) -> None:
    runner = Runner(
        model=_model_cfg(teacher_path),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='pseudo_collate'),
            batch_size=2,
            num_workers=0,
        ),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        cfg=dict(find_unused_parameters=False),
        default_scope='mmengine',
    )
    model = runner.train()
    module = model.module
    torch.save(
        dict(
            wrapper=type(model).__name__,
            params={k: v.detach().clone() for k, v in module.named_parameters()},
            teacher=module.teachers['teacher'].state_dict(),
        ),
        f'{work_dir}/rank{dist.get_rank()}.pt',
    )
    # leave the gloo group explicitly: tearing it down at interpreter exit
    # aborted a rank ("terminate called without an active exception") on a
    # loaded machine after both checkpoints were written
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
