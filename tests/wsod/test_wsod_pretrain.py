"""Image-level classification for weakly supervised detection: the backbone
pretraining classifier, its loss against hand values, the image-level AP metric
against hand values, and OICR's MIDN image scores at test time."""

import math

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmcompress.models.wsod import (
    ImageLevelAPMetric,
    WSODImageClassifier,
    average_precision,
    spatial_pool,
)

from .test_wsod_detector import TINY_BACKBONE, tiny_oicr, weak_sample


def tiny_classifier(num_classes=3, **kwargs):
    return MMDET_MODELS.build(
        dict(
            type='WSODImageClassifier',
            backbone=TINY_BACKBONE,
            in_channels=8,
            num_classes=num_classes,
            **kwargs,
        )
    )


def test_average_precision_hand_values():
    # ranks 1 and 3 are positives: precisions 1/1 and 2/3
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert average_precision(scores, np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    assert average_precision(scores, np.array([0, 0, 0, 1])) == pytest.approx(1 / 4)


def test_image_level_ap_metric_hand_values():
    metric = ImageLevelAPMetric()
    samples = [
        dict(pred_image_scores=torch.tensor(s), gt_instances=dict(labels=labels))
        for s, labels in [
            ([0.9, 0.1], torch.tensor([0, 0])),
            ([0.2, 0.8], torch.tensor([0, 1])),
            ([0.5, 0.3], torch.tensor([1])),
        ]
    ]
    metric.process({}, samples)
    # class 0: positives at scores 0.9 and 0.2, ranks 1 and 3 -> (1 + 2/3) / 2;
    # class 1: positives at 0.8 and 0.3, ranks 1 and 2 -> 1
    value = metric.compute_metrics(metric.results)['cls_mAP']
    assert value == pytest.approx(100 * (5 / 6 + 1) / 2)


def test_image_level_ap_metric_needs_image_scores():
    metric = ImageLevelAPMetric()
    sample = dict(gt_instances=dict(labels=torch.tensor([0])))
    with pytest.raises(KeyError, match='needs `pred_image_scores`'):
        metric.process({}, [sample])


def test_classifier_loss_hand_value_and_gradient(deterministic):
    model = tiny_classifier(num_classes=3)
    torch.nn.init.zeros_(model.fc.weight)
    torch.nn.init.zeros_(model.fc.bias)
    samples = [weak_sample([0, 2], proposals=None), weak_sample([1], None)]
    losses = model.loss(torch.rand(2, 3, 32, 32), samples)
    # zero logits: BCE log 2 for each of the 3 classes of each image
    assert losses['loss_cls'].item() == pytest.approx(3 * math.log(2), rel=1e-6)
    torch.nn.init.normal_(model.fc.weight)
    model.loss(torch.rand(2, 3, 32, 32), samples)['loss_cls'].backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    with torch.no_grad():
        out = model.eval().predict(torch.rand(2, 3, 32, 32), samples)
    assert out[0].pred_image_scores.shape == (3,)
    assert ((out[0].pred_image_scores > 0) & (out[0].pred_image_scores < 1)).all()


def test_classifier_refuses_box_labels():
    sample = DetDataSample()
    sample.gt_instances = InstanceData(
        labels=torch.tensor([0]), bboxes=torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    )
    with pytest.raises(ValueError, match='WSODImageClassifier is weakly supervised'):
        tiny_classifier().loss(torch.rand(1, 3, 32, 32), [sample])


def test_classifier_backbone_loads_into_oicr():
    """The classifier's ``backbone.*`` keys are the OICR backbone's."""
    classifier, detector = tiny_classifier(num_classes=2), tiny_oicr()
    backbone = {
        k: v for k, v in classifier.state_dict().items() if k.startswith('backbone.')
    }
    result = detector.load_state_dict(backbone, strict=False)
    assert result.unexpected_keys == []
    assert not any(k.startswith('backbone.') for k in result.missing_keys)


def test_oicr_predict_writes_midn_image_scores(deterministic):
    model = tiny_oicr().eval()
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        sample = model.predict(image, [weak_sample([0])])[0]
        feats = model.extract_feat(image)
        midn, _ = model.head(model.rois(feats, [sample.proposals.bboxes]), [3])
    expected = midn[0].sum(0).clamp(1e-6, 1 - 1e-6)
    assert torch.allclose(sample.pred_image_scores, expected)


def test_classifier_is_registered_for_mmdet_configs():
    assert MMDET_MODELS.get('WSODImageClassifier') is WSODImageClassifier


def test_spatial_pool_hand_values():
    # one map of 4 cells: 0, 0, 0, log 9 -> mean log(9)/4, max log 9,
    # LSE at r = 1: log((1 + 1 + 1 + 9) / 4) = log 3
    maps = torch.tensor([0.0, 0.0, 0.0, math.log(9)]).view(1, 1, 2, 2)
    assert spatial_pool(maps, 'avg').item() == pytest.approx(math.log(9) / 4)
    assert spatial_pool(maps, 'max').item() == pytest.approx(math.log(9))
    assert spatial_pool(maps, 'lse', lse_r=1.0).item() == pytest.approx(math.log(3))
    # LSE lies between the mean (r -> 0) and the maximum (r -> inf)
    assert spatial_pool(maps, 'lse', lse_r=1e-4).item() == pytest.approx(
        math.log(9) / 4, rel=1e-3
    )
    assert spatial_pool(maps, 'lse', lse_r=1e3).item() == pytest.approx(
        math.log(9), abs=2e-3
    )
    with pytest.raises(ValueError, match="pool must be one of .* got 'sum'"):
        spatial_pool(maps, 'sum')


def test_classifier_max_pool_of_class_maps(deterministic):
    """'max' takes the linear layer at every location, then the spatial
    maximum; 'avg' keeps the linear layer on the averaged level, which equals
    the average of the class maps."""
    model = tiny_classifier(num_classes=2, pool='max').eval()
    level = torch.zeros(1, 8, 2, 2)
    level[0, 0, 1, 1] = 2.0  # one location holds channel 0
    level[0, 1] = 1.0  # channel 1 everywhere
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0]] * 2))
        model.fc.weight[1, 1] = -1.0
        model.fc.bias.copy_(torch.tensor([0.5, 0.0]))
        maps = model.class_maps(level)
    # class 0: 0.5 + 2 at (1, 1), 0.5 elsewhere; class 1: 2 at (1, 1), -1 elsewhere
    assert maps[0, 0].flatten().tolist() == [0.5, 0.5, 0.5, 2.5]
    assert maps[0, 1].flatten().tolist() == [-1.0, -1.0, -1.0, 1.0]
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.extract_feat(image)[-1]
        assert torch.allclose(
            model._forward(image), model.class_maps(feats).amax((2, 3))
        )
        model.pool = 'avg'
        assert torch.allclose(
            model._forward(image), model.class_maps(feats).mean((2, 3)), atol=1e-6
        )


def cell_head(**kwargs):
    return MMDET_MODELS.build(
        dict(type='OICRHead', in_channels=1, fc_channels=4, num_classes=1, **kwargs)
    )


def test_midn_cell_stream_hand_values():
    # one channel, one class: weight 2, bias 1 on cells 1..4 -> 3, 5, 7, 9
    roi = torch.arange(1.0, 5.0).view(1, 1, 2, 2)
    x = torch.zeros(1, 4)
    for pool, expected in [('max', 9.0), ('avg', 6.0)]:
        head = cell_head(cell_streams=('cls',), cell_pool=pool)
        head.midn_cls.weight.data.fill_(2.0)
        head.midn_cls.bias.data.fill_(1.0)
        assert head.stream_logits('cls', roi, x).item() == pytest.approx(expected)
    head = cell_head(cell_streams=('det',), lse_r=1.0)
    head.midn_det.weight.data.fill_(2.0)
    head.midn_det.bias.data.fill_(1.0)
    lse = math.log((math.exp(3) + math.exp(5) + math.exp(7) + math.exp(9)) / 4)
    assert head.stream_logits('det', roi, x).item() == pytest.approx(lse)
    # the other stream stays the linear layer on the fc features (4 -> 1)
    assert head.midn_cls.weight.shape == (1, 4)
    assert head.stream_logits('cls', roi, x).item() == pytest.approx(
        head.midn_cls.bias.item()
    )


def test_midn_streams_default_on_fc_features():
    torch.manual_seed(0)
    head = MMDET_MODELS.build(
        dict(type='OICRHead', in_channels=2, fc_channels=3, num_classes=2)
    )
    assert head.midn_cls.weight.shape == head.midn_det.weight.shape == (2, 3)
    roi = torch.rand(5, 2, 7, 7)
    (midn,), _ = head(roi, [5])
    x = head.fcs(roi.flatten(1))
    expected = head.midn_cls(x).softmax(1) * head.midn_det(x).softmax(0)
    assert torch.allclose(midn, expected)


def test_cell_init_copies_the_classifier_fc_and_matches_its_class_maps(tmp_path):
    torch.manual_seed(0)
    classifier = tiny_classifier(num_classes=3, pool='lse')
    path = str(tmp_path / 'cls.pth')
    torch.save(dict(state_dict=classifier.state_dict()), path)
    head = MMDET_MODELS.build(
        dict(
            type='OICRHead',
            in_channels=8,
            fc_channels=8,
            num_classes=3,
            cell_streams=('cls', 'det'),
            cell_init=path,
        )
    )
    head.init_weights()
    for linear in (head.midn_cls, head.midn_det):
        assert torch.equal(linear.weight, classifier.fc.weight)
        assert torch.equal(linear.bias, classifier.fc.bias)
    roi = torch.rand(4, 8, 7, 7)
    expected = spatial_pool(classifier.class_maps(roi), 'lse', 5.0)
    x = head.fcs(roi.flatten(1))
    assert torch.allclose(head.stream_logits('cls', roi, x), expected, atol=1e-6)
    (midn,), _ = head(roi, [4])
    assert torch.allclose(midn, expected.softmax(1) * expected.softmax(0), atol=1e-6)
