"""Batched, on-device view augmentation with kornia (optional: ``pip install hfcontrast[kornia]``).

:class:`KorniaViewPipeline` builds the same steps as the Pillow :class:`~hfcontrast.augment.ViewPipeline`
from one :class:`~hfcontrast.augment.ViewParams`, but runs on a float batch ``[B, 3, H, W]`` in ``[0, 1]``
on any device, with an independent draw per image. Randomness is torch's global RNG (kornia's
convention); pass ``seed=`` to ``forward`` for a reproducible call that leaves the global RNG untouched.

Differences from the Pillow path are those of the libraries: kornia's colour formulas are torchvision's
(Pillow's ``ImageEnhance`` differs slightly), the blur uses an explicit kernel of ``blur_kernel_size``
pixels (default about 10% of ``size``, as in SimCLR), and a crop that does not fit after 10 tries falls
back to a random (not centred) position.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .pipelines import ViewParams, ViewPipeline, mocov2_pipeline, simclr_pipeline

_INSTALL_HINT = "kornia is needed for KorniaViewPipeline: pip install hfcontrast[kornia]"


def _kornia_augmentation() -> Any:
    try:
        import kornia.augmentation as kornia_augmentation
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL_HINT) from exc
    return kornia_augmentation


def default_blur_kernel_size(size: int) -> int:
    """An odd kernel of about 10% of the output side (SimCLR), at least 3: 224 -> 23, 32 -> 3."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


class KorniaViewPipeline(nn.Module):
    """``[B, 3, H, W]`` in ``[0, 1]`` -> ``[B, 3, size, size]`` augmented and normalised views.

    Built from a :class:`ViewParams` (or :meth:`from_pipeline` / :meth:`simclr` / :meth:`mocov2`); each
    call draws one view per image, so call it once per view on the same batch.
    """

    def __init__(self, params: ViewParams | None = None, *, blur_kernel_size: int | None = None) -> None:
        super().__init__()
        K = _kornia_augmentation()
        self.params = ViewParams() if params is None else params
        p = self.params
        kernel = default_blur_kernel_size(p.size) if blur_kernel_size is None else blur_kernel_size
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"blur_kernel_size must be a positive odd integer, got {kernel}")
        steps: list[nn.Module] = [
            K.RandomResizedCrop(
                (p.size, p.size), scale=p.crop_scale, ratio=p.crop_ratio, resample=p.interpolation.upper()
            )
        ]
        if p.flip_p > 0:
            steps.append(K.RandomHorizontalFlip(p=p.flip_p))
        jitter = (p.brightness, p.contrast, p.saturation, p.hue)
        if p.jitter_p > 0 and any(j > 0 for j in jitter):
            steps.append(K.ColorJitter(*jitter, p=p.jitter_p))
        if p.grayscale_p > 0:
            steps.append(K.RandomGrayscale(p=p.grayscale_p))
        if p.blur_p > 0:
            steps.append(K.RandomGaussianBlur((kernel, kernel), p.blur_sigma, p=p.blur_p))
        if p.solarize_p > 0:
            threshold = p.solarize_threshold / 255.0
            steps.append(
                K.RandomSolarize(thresholds=(threshold, threshold), additions=(0.0, 0.0), p=p.solarize_p)
            )
        self.augment = nn.Sequential(*steps)
        self.normalize = K.Normalize(mean=torch.tensor(p.mean), std=torch.tensor(p.std))
        self.blur_kernel_size = kernel

    @classmethod
    def from_pipeline(cls, pipeline: ViewPipeline, **kwargs: Any) -> KorniaViewPipeline:
        """The kornia equivalent of a Pillow pipeline built from :class:`ViewParams` (e.g. by a factory)."""
        if pipeline.params is None:
            raise ValueError(
                "this ViewPipeline was built from a custom transform list, not from ViewParams; "
                "build the kornia pipeline from ViewParams directly"
            )
        return cls(pipeline.params, **kwargs)

    @classmethod
    def simclr(cls, **kwargs: Any) -> KorniaViewPipeline:
        """Same keyword arguments as :func:`~hfcontrast.augment.simclr_pipeline`."""
        return cls.from_pipeline(simclr_pipeline(**kwargs))

    @classmethod
    def mocov2(cls, **kwargs: Any) -> KorniaViewPipeline:
        """Same keyword arguments as :func:`~hfcontrast.augment.mocov2_pipeline`."""
        return cls.from_pipeline(mocov2_pipeline(**kwargs))

    def forward(
        self, images: torch.Tensor, *, seed: int | None = None, normalize: bool = True
    ) -> torch.Tensor:
        """Augment a float batch in ``[0, 1]``; ``seed`` makes this call reproducible, ``normalize=False``
        returns the augmented images still in ``[0, 1]``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(
                f"expected a float tensor in [0, 1], got {images.dtype}; divide uint8 images by 255"
            )
        if seed is None:
            out = self.augment(images)
        else:
            devices = [images.device] if images.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                out = self.augment(images)
        return self.normalize(out) if normalize else out

    def extra_repr(self) -> str:
        return f"size={self.params.size}, blur_kernel_size={self.blur_kernel_size}"
