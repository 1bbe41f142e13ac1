"""Weakly supervised detection (OICR, CASD) mistakes: views that do not match,
box labels or missing proposals fed to the weakly supervised detector."""

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmcompress.models.wsod import (
    CASDInputWiseLoss,
    CASDLayerWiseLoss,
    CorLocMetric,
    ImageLevelLabels,
)
from tests.wsod.test_wsod_detector import BOXES, tiny_oicr, weak_sample


def test_casd_views_with_different_proposals():
    """CASD-IW fed RoI features of different proposal sets in two views.

    Message: the views hold different numbers of RoIs
    """
    with pytest.raises(ValueError, match='the views hold different numbers of RoIs'):
        CASDInputWiseLoss()(torch.rand(4, 2, 7, 7), torch.rand(5, 2, 7, 7))


def test_casd_flip_flags_do_not_match_views():
    """CASD configured with flip flags for 4 views but given 2.

    Message: got 2 views but flipped has 4 entries
    """
    loss = CASDLayerWiseLoss(flipped=[False, True, False, True])
    with pytest.raises(ValueError, match='got 2 views but flipped has 4 entries'):
        loss(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4))


def test_casd_single_view():
    """CASD given one view only (no flips or scales to distil across).

    Message: needs at least 2 views, got 1
    """
    with pytest.raises(ValueError, match='needs at least 2 views, got 1'):
        CASDInputWiseLoss()(torch.rand(4, 2, 7, 7))


def test_wsod_box_labels_fed_to_the_weakly_supervised_detector():
    """A box-annotated training pipeline (no ImageLevelLabels) used for OICR.

    Message: is weakly supervised but sample 0 of the training batch holds box labels
    """
    sample = weak_sample([0])
    sample.gt_instances.bboxes = BOXES[:1]
    with pytest.raises(
        ValueError,
        match=r'holds box labels \(gt_instances.bboxes, 1 boxes\); '
        r'add dict\(type=.ImageLevelLabels.\)',
    ):
        tiny_oicr().loss(torch.rand(1, 3, 32, 32), [sample])


def test_wsod_images_without_proposals():
    """A WSOD pipeline without a proposal source (no WSODProposals).

    Message: needs proposals with every image, but sample 0
    """
    with pytest.raises(
        ValueError, match='needs proposals with every image, but sample 0'
    ):
        tiny_oicr().loss(torch.rand(1, 3, 32, 32), [weak_sample([0], proposals=None)])


def test_wsod_empty_proposal_set():
    """An image whose proposal set is empty.

    Message: has an empty set; add dict(type='WSODProposals')
    """
    sample = weak_sample([0], proposals=torch.zeros(0, 4))
    with pytest.raises(ValueError, match='has an empty set'):
        tiny_oicr().eval().predict(torch.rand(1, 3, 32, 32), [sample])


def test_wsod_casd_on_a_single_view_detector():
    """CASD losses configured on an OICR without flips or a second scale.

    Message: CASD distils across views but the detector has one view
    """
    with pytest.raises(ValueError, match='CASD distils across views'):
        tiny_oicr(casd_iw=dict(type='CASDInputWiseLoss'))


def test_wsod_image_level_labels_before_load_annotations():
    """ImageLevelLabels placed before LoadAnnotations in the pipeline.

    Message: ImageLevelLabels needs gt_bboxes_labels
    """
    with pytest.raises(KeyError, match='ImageLevelLabels needs gt_bboxes_labels'):
        ImageLevelLabels().transform(dict(img=np.zeros((4, 4, 3))))


def test_wsod_corloc_without_ground_truth_boxes():
    """CorLoc evaluated on a pipeline that does not load the boxes.

    Message: CorLocMetric needs ground-truth boxes
    """
    sample = DetDataSample()
    sample.pred_instances = InstanceData(
        bboxes=BOXES, scores=torch.ones(3), labels=torch.zeros(3, dtype=torch.long)
    )
    with pytest.raises(KeyError, match='CorLocMetric needs ground-truth boxes'):
        CorLocMetric().process({}, [sample.to_dict()])


def test_wsod_classifier_unknown_pooling():
    """The WSOD image classifier configured with a pooling it does not have.

    Message: WSODImageClassifier pool must be one of ('avg', 'max', 'lse')
    """
    from tests.wsod.test_wsod_pretrain import tiny_classifier

    with pytest.raises(ValueError, match=r"pool must be one of .*, got 'gap'"):
        tiny_classifier(pool='gap')


def test_wsod_head_cell_init_without_cell_streams():
    """OICR head given a classifier checkpoint for its cell streams but no cell stream.

    Message: initialises the cell streams but cell_streams is empty
    """
    with pytest.raises(ValueError, match='initialises the cell streams but cell_'):
        MMDET_MODELS.build(
            dict(type='OICRHead', in_channels=8, cell_init='classifier.pth')
        )


def test_wsod_head_unknown_cell_stream():
    """OICR head asked for a cell stream other than 'cls' and 'det'.

    Message: cell_streams must be a subset of ('cls', 'det')
    """
    with pytest.raises(ValueError, match=r"must be a subset of \('cls', 'det'\)"):
        MMDET_MODELS.build(
            dict(type='OICRHead', in_channels=8, cell_streams=('refine',))
        )


def test_wsod_head_cell_init_from_a_checkpoint_without_matching_fc(tmp_path):
    """OICR cell streams started from a checkpoint whose fc does not fit the head.

    Message: the cell stream 'cls' needs (2, 8)
    """
    path = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict={'fc.weight': torch.zeros(5, 8)}), path)
    head = MMDET_MODELS.build(
        dict(
            type='OICRHead',
            in_channels=8,
            num_classes=2,
            cell_streams=('cls',),
            cell_init=path,
        )
    )
    with pytest.raises(ValueError, match=r"the cell stream 'cls' needs \(2, 8\)"):
        head.init_weights()
