"""FSRCNN, the PISR teacher, the DistillModel that records both `expanding`
outputs, and the hook that initialises the student from the teacher's decoder."""

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import BaseDataElement

from mmcompress.distill import DistillModel
from mmcompress.models.sr import FSRCNN, InitStudentFromTeacherHook, PISRTeacher


def batch(n=2, size=8, scale=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hr = torch.rand(n, 1, size * scale, size * scale, generator=generator)
    lr = F.interpolate(hr, scale_factor=1 / scale, mode='bicubic', antialias=True)
    return lr, [BaseDataElement(gt_img=image) for image in hr]


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_fsrcnn_upscales_by_its_scale(scale):
    model = FSRCNN(scale=scale)
    lr = torch.rand(2, 1, 7, 9)
    assert model(lr).shape == (2, 1, 7 * scale, 9 * scale)
    assert model.expanding(torch.rand(1, 12, 7, 9)).shape == (1, 56, 7, 9)


def test_fsrcnn_loss_is_l1_to_hr_and_predict_attaches_images():
    torch.manual_seed(0)
    model = FSRCNN(loss_weight=2.0)
    lr, samples = batch()
    hr = torch.stack([s.gt_img for s in samples])
    losses = model(lr, samples, mode='loss')
    assert losses['loss_l1'].item() == pytest.approx(
        2.0 * (model(lr) - hr).abs().mean().item(), rel=1e-6
    )
    out = model(lr, samples, mode='predict')
    assert torch.equal(out[0].pred_img, model(lr)[0])


def test_teacher_encodes_hr_to_lr_size_and_decodes():
    """The teacher reads the HR image from the samples, not the LR input; its
    loss is L1(SR, HR) + 1e-4 L1(encoder(HR), LR)."""
    torch.manual_seed(0)
    teacher = PISRTeacher(scale=2)
    lr, samples = batch()
    hr = torch.stack([s.gt_img for s in samples])
    encoded = teacher.encoder(hr)
    assert encoded.shape == lr.shape
    sr = teacher.decoder.generate(encoded)
    assert torch.allclose(teacher(lr, samples), sr)
    assert torch.allclose(teacher(torch.zeros_like(lr), samples), sr)
    losses = teacher(lr, samples, mode='loss')
    assert losses['loss_sr'].item() == pytest.approx((sr - hr).abs().mean().item())
    assert losses['loss_imitation'].item() == pytest.approx(
        1e-4 * (encoded - lr).abs().mean().item(), rel=1e-5
    )


def distill_model(loss=None):
    torch.manual_seed(0)
    return DistillModel(
        student=dict(type='FSRCNN', scale=2),
        teacher=dict(config=dict(type='PISRTeacher', scale=2)),
        distill=dict(
            expanding=dict(
                student='expanding',
                teacher='decoder.expanding',
                adapter=None,
                loss=loss or dict(type='VIDLoss', channels=56, loss_weight=1e-6),
            )
        ),
        input_shape=(1, 8, 8),
    )


def test_distill_model_records_expanding_of_student_and_hr_teacher():
    """The distillation term is VIDLoss between the student's `expanding` on
    the LR input and the teacher decoder's `expanding` on encoder(HR)."""
    model = distill_model()
    lr, samples = batch()
    losses = model(lr, samples, mode='loss')
    hr = torch.stack([s.gt_img for s in samples])
    teacher = model.teachers['teacher']
    with torch.no_grad():
        x = teacher.encoder(hr)
        dec = teacher.decoder
        feat_T = dec.expanding(dec.mapping(dec.shrinking(dec.feature_extraction(x))))
    student = model.student
    feat_S = student.expanding(
        student.mapping(student.shrinking(student.feature_extraction(lr)))
    )
    expected = model.distill_losses['expanding'](feat_S, feat_T)
    assert losses['loss_distill_expanding'].item() == pytest.approx(
        expected.item(), rel=1e-6
    )
    assert losses['loss_l1'].item() == pytest.approx(
        (student(lr) - hr).abs().mean().item(), rel=1e-6
    )
    assert feat_T.shape == (2, 56, 8, 8)


class FakeRunner:
    def __init__(self, model, iteration=0, load_from=None):
        self.model, self.iter, self._load_from = model, iteration, load_from


def test_init_hook_copies_the_teacher_decoder_into_the_student():
    model = distill_model()
    decoder = model.teachers['teacher'].decoder.state_dict()
    InitStudentFromTeacherHook('decoder.').before_train(FakeRunner(model))
    for key, value in model.student.state_dict().items():
        assert torch.equal(value, decoder[key]), key


def test_init_hook_keeps_resumed_or_loaded_weights():
    model = distill_model()
    before = {k: v.clone() for k, v in model.student.state_dict().items()}
    InitStudentFromTeacherHook().before_train(FakeRunner(model, iteration=5))
    InitStudentFromTeacherHook().before_train(FakeRunner(model, load_from='x.pth'))
    for key, value in model.student.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_init_hook_refuses_a_prefix_that_matches_nothing():
    with pytest.raises(ValueError, match=r"keys under 'encoder\.' do not match"):
        InitStudentFromTeacherHook('encoder.').before_train(FakeRunner(distill_model()))


def test_whole_test_images_of_different_sizes_run_one_by_one():
    from mmcompress.models.sr import SRDataPreprocessor

    torch.manual_seed(0)
    model = FSRCNN()
    images = [torch.rand(1, 6, 8), torch.rand(1, 5, 7)]
    samples = [BaseDataElement(), BaseDataElement()]
    data = SRDataPreprocessor()(dict(inputs=images, data_samples=samples))
    out = model(**data, mode='predict')
    for image, sample in zip(images, out):
        assert torch.equal(sample.pred_img, model(image[None])[0])
