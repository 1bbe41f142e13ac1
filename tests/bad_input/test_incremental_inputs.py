"""Class-incremental segmentation mistakes: splits, steps, step checkpoints."""

import os.path as osp
import sys

import pytest
from mmengine.registry import DefaultScope

from mmcompress.incremental import IncrementalSegDataset, parse_split
from mmcompress.registry import MODELS
from tests.e2e.runs import REPO
from tests.incremental.conftest import batch, tiny_segmentor_cfg


def build(**kwargs):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(tiny_segmentor_cfg(**kwargs))


def test_split_string_does_not_parse():
    """A split written with a letter or an empty part, e.g. '6-2-x'.

    Message: Split '6-2-x' does not parse: part 'x' is not a positive integer
    """
    with pytest.raises(ValueError, match="Split '6-2-x' does not parse: part 'x'"):
        parse_split('6-2-x', 10)


def test_split_names_more_classes_than_the_dataset():
    """A split whose steps add up to more classes than the dataset has.

    Message: Split '8-4' names 12 classes but the dataset has 10 foreground
    """
    with pytest.raises(ValueError, match="Split '8-4' names 12 classes but the"):
        parse_split('8-4', 10)


def test_split_leaves_classes_out():
    """A split of three or more steps that does not cover every class.

    Message: Split '2-2-2' covers 6 of the 10 foreground classes
    """
    with pytest.raises(ValueError, match="Split '2-2-2' covers 6 of the 10"):
        parse_split('2-2-2', 10)


def test_split_lists_overlap():
    """Explicit step class lists that name a class twice.

    Message: class 2 is in step 0 and in step 1; step class lists must not overlap
    """
    with pytest.raises(ValueError, match='class 2 is in step 0 and in step 1'):
        parse_split([[1, 2], [2, 3]], 4)


def test_split_list_names_background_or_unknown_class():
    """An explicit step list naming background (0) or a class the dataset lacks.

    Message: class id 0 of step 0 is not a foreground class of the dataset
    """
    with pytest.raises(ValueError, match='class id 0 of step 0 is not a foreground'):
        parse_split([[0, 1], [2]], 4)


def test_step_out_of_range():
    """A step index past the last step of the split.

    Message: step 3 is out of range for split '2-1-1', which has 3 steps
    """
    with pytest.raises(ValueError, match=r"step 3 is out of range for split '2-1-1'"):
        build(step=3)


def test_dataset_with_reduced_zero_label():
    """Wrapping a dataset that uses reduce_zero_label (ADE20K's default).

    Message: incremental steps need background at 0 and the classes at 1..C
    """
    with pytest.raises(ValueError, match='remaps its labels.*background at 0'):
        IncrementalSegDataset(
            dataset=dict(
                type='mmseg.BaseSegDataset',
                data_root='.',
                reduce_zero_label=True,
                metainfo=dict(classes=('a', 'b')),
                lazy_init=True,
            ),
            split='1-1',
            step=0,
        )


def test_load_from_checkpoint_of_another_split():
    """load_from names a checkpoint whose heads have other class counts.

    Message: Checkpoint head classifier.heads.1 (step 0) has 3 classes, but split
    """
    step0 = build(step=0, split='3-1')
    model = build(step=1, split='2-1-1')
    with pytest.raises(
        ValueError,
        match=r"classifier.heads.1 \(step 0\) has 3 classes, but split '2-1-1' "
        'gives it 2',
    ):
        model.load_state_dict(step0.state_dict())


def test_load_from_checkpoint_two_steps_back():
    """Step 2 started from the step-0 checkpoint instead of step 1's.

    Message: Checkpoint has the heads of step 0 of split '2-1-1'; a step-2 model
    """
    with pytest.raises(ValueError, match='heads of step 0 of split .* a step-2 model'):
        build(step=2).load_state_dict(build(step=0).state_dict())


def test_resumed_step_has_no_previous_model():
    """An incremental step restarted from its own checkpoint (resume).

    Message: distils from the step-0 model, but none was loaded
    """
    model = build(step=1)
    model.load_state_dict(build(step=1).state_dict())
    with pytest.raises(RuntimeError, match='step-0 model, but none was loaded'):
        model.train().loss(*batch())


def test_unknown_loss_weight():
    """A loss weight name the head type does not have (typo, or MiB's on DKD).

    Message: loss_weights ['dkd'] are not losses of head_type='sigmoid'
    """
    with pytest.raises(KeyError, match=r"\['dkd'\] are not losses of head_type"):
        build(loss_weights=dict(dkd=1.0))


def test_step0_from_a_sequence_without_a_finished_step0(tmp_path):
    """tools/ciss.py --step0-from naming a sequence whose step 0 has not finished.

    Message: holds no finished step 0 (no metrics.json); run that sequence first
    """
    sys.path.insert(0, osp.join(REPO, 'tools'))
    import ciss

    (tmp_path / 'dkd' / 'step0').mkdir(parents=True)
    config = osp.join(
        REPO, 'configs', 'incremental', 'mmseg', 'dkd_fcn_r18-w16_scenes-6-2-2_step0.py'
    )
    with pytest.raises(FileNotFoundError, match='holds no finished step 0'):
        ciss.main(
            [config, '--work-dir', str(tmp_path / 'ft')]
            + ['--step0-from', str(tmp_path / 'dkd')]
        )
