"""Image-text retrieval metrics: Recall@K and median rank in both directions (e.g. Flickr30k/COCO).

Ranks are 1-based positions of the first correct item when candidates are sorted by cosine
similarity. Ties count against the model (an incorrect candidate with the same similarity as the
correct one ranks above it), so a collapsed encoder scores the worst rank, not the best.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ._common import as_features, cosine_normalize, evaluating, model_device, progress, rows_at, to_device

TEXT_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def _summary(ranks: torch.Tensor, prefix: str, ks: Sequence[int]) -> dict[str, float]:
    out = {f"{prefix}_R@{k}": float((ranks <= k).float().mean()) for k in ks}
    out[f"{prefix}_median_rank"] = float(ranks.double().quantile(0.5))
    return out


def retrieval_ranks(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_to_image: torch.Tensor,
    *,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based ranks ``(image_to_text [N_img], text_to_image [N_txt])``.

    Image ``i``: 1 + number of non-captions of ``i`` at least as similar as its best caption.
    Text ``t``: 1 + number of other images at least as similar as its image ``text_to_image[t]``.
    """
    images = cosine_normalize(image_emb)
    texts = cosine_normalize(text_emb.to(images.device))
    t2i = text_to_image.to(images.device)
    i2t_ranks = []
    for start in range(0, images.shape[0], chunk_size):
        sims = images[start : start + chunk_size] @ texts.T  # [c, N_txt]
        ids = torch.arange(start, start + sims.shape[0], device=sims.device)
        positive = t2i[None, :] == ids[:, None]
        best = sims.masked_fill(~positive, float("-inf")).amax(dim=1, keepdim=True)
        i2t_ranks.append(1 + ((sims >= best) & ~positive).sum(dim=1))
    t2i_ranks = []
    for start in range(0, texts.shape[0], chunk_size):
        sims = texts[start : start + chunk_size] @ images.T  # [c, N_img]
        target = t2i[start : start + sims.shape[0], None]
        positive = torch.zeros_like(sims, dtype=torch.bool).scatter_(1, target, True)
        t2i_ranks.append(1 + ((sims >= sims.gather(1, target)) & ~positive).sum(dim=1))
    return torch.cat(i2t_ranks), torch.cat(t2i_ranks)


def retrieval_metrics(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    *,
    text_to_image: torch.Tensor | None = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall@K (in [0, 1]) and median rank for image->text and text->image retrieval.

    ``text_to_image[t]`` is the index of the image captioned by text ``t`` (several captions per image
    allowed; an image->text hit is any of its captions). Without it, texts and images pair 1:1.
    Keys: ``image_to_text_R@{k}``, ``image_to_text_median_rank``, ``text_to_image_R@{k}``,
    ``text_to_image_median_rank``.
    """
    if image_emb.dim() != 2 or text_emb.dim() != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"image and text embeddings must be [N, D] with the same D; got {tuple(image_emb.shape)} "
            f"and {tuple(text_emb.shape)}"
        )
    n_img, n_txt = image_emb.shape[0], text_emb.shape[0]
    if n_img == 0 or n_txt == 0:
        raise ValueError("need at least one image and one text")
    if text_to_image is None:
        if n_img != n_txt:
            raise ValueError(
                f"{n_img} images and {n_txt} texts: pass text_to_image to say which image each text captions"
            )
        text_to_image = torch.arange(n_txt)
    text_to_image = torch.as_tensor(text_to_image).long()
    if text_to_image.shape != (n_txt,):
        raise ValueError(f"text_to_image must have shape ({n_txt},), got {tuple(text_to_image.shape)}")
    if int(text_to_image.min()) < 0 or int(text_to_image.max()) >= n_img:
        raise ValueError(f"text_to_image values must be in [0, {n_img - 1}]")
    uncaptioned = torch.ones(n_img, dtype=torch.bool)
    uncaptioned[text_to_image] = False
    if uncaptioned.any():
        raise ValueError(
            f"images without a caption in text_to_image: {uncaptioned.nonzero().flatten()[:10].tolist()}"
        )
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be >= 1, got {tuple(ks)}")
    i2t, t2i = retrieval_ranks(image_emb, text_emb, text_to_image, chunk_size=chunk_size)
    return {**_summary(i2t, "image_to_text", ks), **_summary(t2i, "text_to_image", ks)}


def split_views(
    batch: Mapping[str, Any], image_view: str, text_view: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(image_inputs, text_inputs)`` from named views ``{image_view: {...}, text_view: {...}}``,
    or from a flat batch (``pixel_values`` vs tokenizer outputs)."""
    if isinstance(batch.get(image_view), Mapping) and isinstance(batch.get(text_view), Mapping):
        return dict(batch[image_view]), dict(batch[text_view])
    if "pixel_values" in batch and "input_ids" in batch:
        return {"pixel_values": batch["pixel_values"]}, {k: batch[k] for k in TEXT_INPUT_NAMES if k in batch}
    raise KeyError(
        f"collate_fn output has keys {sorted(batch)}; expected views {image_view!r} and {text_view!r} "
        "or flat 'pixel_values' and 'input_ids'"
    )


class RetrievalEvaluator:
    """Image-text retrieval with a dual encoder (``get_image_features`` / ``get_text_features``).

    ``pairs`` is a sequence of rows, one per (image, caption) pair; ``collate_fn(rows)`` returns
    ``{"image": {"pixel_values": ...}, "text": {"input_ids": ..., ...}}`` (or those keys flat).
    With ``image_id_column``, rows sharing ``row[image_id_column]`` are captions of one image: that image
    is embedded once and an image->text hit is any of its captions. Returns :func:`retrieval_metrics`
    keys prefixed with ``{name}_``.
    """

    def __init__(
        self,
        pairs: Any,
        *,
        collate_fn: Callable[[list[Any]], Mapping[str, Any]],
        name: str = "retrieval",
        image_id_column: str | None = None,
        image_view: str = "image",
        text_view: str = "text",
        batch_size: int = 256,
        ks: Sequence[int] = (1, 5, 10),
        show_progress_bar: bool = False,
    ) -> None:
        if len(pairs) == 0:
            raise ValueError("pairs is empty")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.pairs = pairs
        self.collate_fn = collate_fn
        self.name = name
        self.image_view, self.text_view = image_view, text_view
        self.batch_size = batch_size
        self.ks = tuple(ks)
        self.show_progress_bar = show_progress_bar
        n = len(pairs)
        if image_id_column is None:
            image_ids: list[Hashable] = list(range(n))
        elif hasattr(pairs, "column_names"):  # datasets.Dataset: read the column without decoding images
            image_ids = list(pairs[image_id_column])
        else:
            image_ids = [pairs[i][image_id_column] for i in range(n)]
        seen: dict[Hashable, int] = {}
        first_rows: list[bool] = []
        for image_id in image_ids:
            first_rows.append(image_id not in seen)
            seen.setdefault(image_id, len(seen))
        self.text_to_image = torch.tensor([seen[i] for i in image_ids], dtype=torch.long)
        # an image is embedded once, from the row holding its first caption
        self._embed_image = torch.tensor(first_rows, dtype=torch.bool)

    def embed(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image_emb [N_img, D], text_emb [N_pairs, D])`` in float32 on the model's device."""
        images: list[torch.Tensor] = []
        texts: list[torch.Tensor] = []
        n = len(self.pairs)
        starts = range(0, n, self.batch_size)
        encoder: Any = model
        with evaluating(model):
            device = model_device(model)
            for start in progress(starts, enabled=self.show_progress_bar, desc=self.name, total=len(starts)):
                stop = min(start + self.batch_size, n)
                batch = self.collate_fn(rows_at(self.pairs, range(start, stop)))
                image_inputs, text_inputs = split_views(batch, self.image_view, self.text_view)
                keep = self._embed_image[start:stop]
                texts.append(
                    as_features(
                        encoder.get_text_features(**to_device(text_inputs, device)), "get_text_features"
                    ).float()
                )
                if keep.any():
                    pixels = image_inputs.pop("pixel_values")[keep]
                    out = encoder.get_image_features(
                        pixel_values=pixels.to(device), **to_device(image_inputs, device)
                    )
                    images.append(as_features(out, "get_image_features").float())
        return torch.cat(images).clone(), torch.cat(texts).clone()

    def __call__(self, model: nn.Module) -> dict[str, float]:
        image_emb, text_emb = self.embed(model)
        metrics = retrieval_metrics(image_emb, text_emb, text_to_image=self.text_to_image, ks=self.ks)
        return {f"{self.name}_{key}": value for key, value in metrics.items()}


if __name__ == "__main__":  # python -m hfcontrast.evaluation.retrieval --model out --data beir_folder (text retrieval)
    from .ir import main

    main()
