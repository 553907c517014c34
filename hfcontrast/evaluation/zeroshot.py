"""Zero-shot image classification with a dual (image-text) encoder, as in CLIP (Radford et al., 2021).

Class ``c`` gets the weight ``w_c = normalize(mean_t normalize(f_text(template_t(c))))`` (prompt
ensembling over templates); an image ``x`` is classified as ``argmax_c cos(f_image(x), w_c)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ._common import cosine_normalize, encode_rows, encode_texts, evaluating, model_device

Template = str | Callable[[str], str]


def _fill(template: Template, class_name: str) -> str:
    if callable(template):
        return template(class_name)
    if "{}" not in template:
        raise ValueError(f"template {template!r} has no '{{}}' placeholder for the class name")
    return template.replace("{}", class_name)


def zero_shot_classifier(
    model: nn.Module,
    tokenizer: Any,
    class_names: Sequence[str],
    templates: Sequence[Template],
    *,
    device: torch.device | str | None = None,
    max_length: int = 64,
    batch_size: int = 256,
) -> torch.Tensor:
    """Zero-shot class weights ``[C, D]`` (unit rows) from ``model.get_text_features``.

    Each prompt ``template`` with ``{}`` replaced by the class name (or ``template(class_name)`` for a callable) is embedded
    and L2-normalised; the prompts of a class are averaged and the mean renormalised. Runs in eval mode
    under ``torch.inference_mode()``; the model's training flag is restored.
    """
    if not class_names:
        raise ValueError("class_names is empty")
    if not templates:
        raise ValueError("templates is empty")
    prompts = [_fill(t, c) for c in class_names for t in templates]
    encoder: Any = model
    with evaluating(model):
        target = torch.device(device) if device is not None else model_device(model)
        text = encode_texts(
            encoder.get_text_features,
            tokenizer,
            prompts,
            device=target,
            batch_size=batch_size,
            max_length=max_length,
            desc="zero-shot prompts",
        )
        per_prompt = cosine_normalize(text).view(len(class_names), len(templates), -1)
        classifier = cosine_normalize(per_prompt.mean(dim=1))
    return classifier.clone()


def zero_shot_accuracy(
    image_emb: torch.Tensor, classifier: torch.Tensor, labels: torch.Tensor, *, top_k: int = 1
) -> float:
    """Top-``k`` accuracy in [0, 1] of ``argmax_c cos(image_emb, classifier[c])`` against ``labels``."""
    if image_emb.dim() != 2 or classifier.dim() != 2 or image_emb.shape[1] != classifier.shape[1]:
        raise ValueError(
            f"image_emb [N, D] and classifier [C, D] must share D; got {tuple(image_emb.shape)} "
            f"and {tuple(classifier.shape)}"
        )
    labels = torch.as_tensor(labels, device=image_emb.device).long()
    if labels.shape != (image_emb.shape[0],):
        raise ValueError(f"labels must have shape ({image_emb.shape[0]},), got {tuple(labels.shape)}")
    if not 1 <= top_k <= classifier.shape[0]:
        raise ValueError(f"top_k must be in [1, {classifier.shape[0]}], got {top_k}")
    logits = cosine_normalize(image_emb) @ cosine_normalize(classifier.to(image_emb.device)).T
    top = logits.topk(top_k, dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())


class ZeroShotEvaluator:
    """Zero-shot top-1 accuracy of a dual encoder on a labelled image set.

    ``images`` is a sequence of rows; ``collate_fn(rows)`` returns ``{"pixel_values": ..., "labels": ...}``.
    The class weights are rebuilt on each call (the text tower changes during training). Returns
    ``{name}_top1``, and ``{name}_top5`` when there are more than 5 classes.
    """

    def __init__(
        self,
        images: Any,
        *,
        collate_fn: Callable[[list[Any]], Mapping[str, Any]],
        class_names: Sequence[str],
        templates: Sequence[Template],
        tokenizer: Any,
        name: str = "zeroshot",
        batch_size: int = 256,
        max_length: int = 64,
        show_progress_bar: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images = images
        self.collate_fn = collate_fn
        self.class_names = list(class_names)
        self.templates = list(templates)
        for template in self.templates:
            _fill(template, "x")  # fail early on a template without a placeholder
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.max_length = max_length
        self.show_progress_bar = show_progress_bar

    def __call__(self, model: nn.Module) -> dict[str, float]:
        encoder: Any = model
        classifier = zero_shot_classifier(
            model,
            self.tokenizer,
            self.class_names,
            self.templates,
            max_length=self.max_length,
            batch_size=self.batch_size,
        )
        with evaluating(model):
            image_emb, labels = encode_rows(
                model,
                self.images,
                self.collate_fn,
                device=model_device(model),
                batch_size=self.batch_size,
                encode=encoder.get_image_features,
                show_progress_bar=self.show_progress_bar,
                desc=f"{self.name}: images",
            )
            if int(labels.max()) >= len(self.class_names) or int(labels.min()) < 0:
                raise ValueError(f"labels must be in [0, {len(self.class_names) - 1}] (one per class name)")
            results = {f"{self.name}_top1": zero_shot_accuracy(image_emb, classifier, labels)}
            if len(self.class_names) > 5:
                results[f"{self.name}_top5"] = zero_shot_accuracy(image_emb, classifier, labels, top_k=5)
        return results
