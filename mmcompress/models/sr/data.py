"""Batches of super-resolution models: the data preprocessor, the high-resolution
targets carried by the data samples, and the scale check shared by the models."""

from typing import List, Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from mmcompress.registry import MODELS

#: Scale factors of the SR models (DIV2K's x2 / x3 / x4 tracks and x8).
SCALES = (2, 3, 4, 8)


def check_scale(scale, owner: str) -> int:
    """Return ``scale`` after checking it is one of :data:`SCALES`.

    Args:
        scale: The scale factor given.
        owner (str): Class name, used in the message.

    Returns:
        int: ``scale``.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise ValueError(
            f'{owner}: scale must be one of {SCALES} (an integer upscaling '
            f'factor the transposed-convolution upsampler supports), got {scale!r}'
        )
    return scale


def stack_targets(data_samples: Optional[Sequence], owner: str) -> torch.Tensor:
    """Stack the ``gt_img`` (C, H, W) of every data sample into (N, C, H, W).

    Args:
        data_samples (Sequence, optional): Data samples of the batch.
        owner (str): Class name, used in the message.

    Returns:
        Tensor: The high-resolution targets.
    """
    if not data_samples or not all('gt_img' in s for s in data_samples):
        raise ValueError(
            f'{owner} needs the high-resolution image as `gt_img` in every data '
            'sample (SRPhotoDataset provides it)'
        )
    shapes = {tuple(s.gt_img.shape) for s in data_samples}
    if len(shapes) > 1:
        raise ValueError(
            f'{owner}: the HR images of a batch differ in size {sorted(shapes)}; '
            'train on fixed-size patches (patch_size) and test with batch_size=1'
        )
    return torch.stack([s.gt_img for s in data_samples])


def check_pair(lr: torch.Tensor, hr: torch.Tensor, scale: int, owner: str) -> None:
    """Raise unless ``hr`` is ``scale`` times ``lr`` in height and width.

    Args:
        lr (Tensor): Low-resolution batch (N, C, h, w).
        hr (Tensor): High-resolution batch (N, C, H, W).
        scale (int): The model's scale factor.
        owner (str): Class name, used in the message.
    """
    expected = (lr.shape[0], lr.shape[1], lr.shape[2] * scale, lr.shape[3] * scale)
    if tuple(hr.shape) != expected:
        raise ValueError(
            f'{owner}: HR/LR size mismatch: LR {tuple(lr.shape)} at scale {scale} '
            f'needs HR {expected}, got {tuple(hr.shape)} (is the dataset scale '
            'the model scale?)'
        )


def attach_predictions(data_samples: Optional[List], preds: torch.Tensor) -> List:
    """Set ``pred_img`` of each data sample (one is made when none is given).

    Args:
        data_samples (list, optional): Data samples of the batch.
        preds (Tensor): Super-resolved batch (N, C, H, W).

    Returns:
        list: The data samples.
    """
    from mmengine.structures import BaseDataElement

    if data_samples is None:
        data_samples = [BaseDataElement() for _ in range(len(preds))]
    for sample, pred in zip(data_samples, preds):
        sample.pred_img = pred.detach()
    return data_samples


def one_by_one(model, inputs: List[torch.Tensor], data_samples, mode: str):
    """Run ``model`` on each image of a list (evaluation batches of whole
    images of different sizes).

    Args:
        model (nn.Module): An SR model.
        inputs (list[Tensor]): (C, h, w) images.
        data_samples (list, optional): Their data samples.
        mode (str): ``'predict'`` or ``'tensor'``.

    Returns:
        list: The data samples (``'predict'``) or the SR tensors.
    """
    if mode not in ('predict', 'tensor'):
        raise ValueError(
            f'{type(model).__name__}: a list of differently sized images can only '
            f"be run in 'predict' or 'tensor' mode, got {mode!r}"
        )
    samples = data_samples or [None] * len(inputs)
    outputs = [
        model(x[None], None if s is None else [s], mode=mode)[0]
        for x, s in zip(inputs, samples)
    ]
    return outputs


@MODELS.register_module()
class SRDataPreprocessor(BaseDataPreprocessor):
    """Stack the low-resolution inputs and move inputs and data samples (with
    their ``gt_img``) to the model's device. Images are float tensors in
    [0, 1] already (no normalisation). Evaluation batches of whole images of
    different sizes stay a list of (1, C, h, w) tensors, which the SR models
    run one by one (:func:`one_by_one`).
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        """Args: ``data`` with ``inputs`` (a list of (C, h, w) tensors or a
        batch) and ``data_samples``. Returns: the batch on the device."""
        data = self.cast_data(data)
        inputs = data['inputs']
        samples = data.get('data_samples')
        if isinstance(inputs, (list, tuple)):
            shapes = {tuple(x.shape) for x in inputs}
            if len(shapes) > 1 and training:
                raise ValueError(
                    'SRDataPreprocessor: the LR images of a training batch differ '
                    f'in size {sorted(shapes)}; train on fixed-size patches '
                    '(patch_size)'
                )
            if len(shapes) > 1:  # whole test images: the model runs them one by one
                return dict(inputs=[x.float() for x in inputs], data_samples=samples)
            inputs = torch.stack(list(inputs))
        return dict(inputs=inputs.float(), data_samples=samples)
