"""Frozen-feature evaluation of image encoders: weighted kNN and a linear probe.

Weighted kNN (Wu et al., 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination"; as used by MoCo/DINO): for a test embedding ``q``, take the ``k`` training embeddings
with the highest cosine ``s_i``, weight each by ``exp(s_i / T)``, sum the weights per class, predict the
argmax.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._common import cosine_normalize, encode_rows, evaluating, model_device


def _check_labelled(emb: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    if emb.dim() != 2:
        raise ValueError(f"{what} embeddings must be [N, D], got shape {tuple(emb.shape)}")
    if labels.dim() != 1 or labels.shape[0] != emb.shape[0]:
        raise ValueError(
            f"{what} labels must be [N] with N = {emb.shape[0]} (one per embedding), got shape {tuple(labels.shape)}"
        )
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"{what} labels must be >= 0, got {int(labels.min())}")


def _num_classes(train_labels: torch.Tensor, num_classes: int | None) -> int:
    inferred = int(train_labels.max()) + 1
    if num_classes is None:
        return inferred
    if num_classes < inferred:
        raise ValueError(f"num_classes={num_classes} but train labels go up to {inferred - 1}")
    return num_classes


def knn_classify(
    train_emb: torch.Tensor,
    train_labels: torch.Tensor,
    test_emb: torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Weighted-kNN class predictions ``[N_test]`` (long): ``argmax_c sum_{i in topk, y_i = c} exp(s_i / T)``.

    Cosine similarity (embeddings normalised here); ``k`` is clipped to the training set size; test
    embeddings are processed ``chunk_size`` at a time so memory is ``O(chunk_size * N_train)``.
    """
    train_labels = torch.as_tensor(train_labels, device=train_emb.device).long()
    _check_labelled(train_emb, train_labels, "train")
    if test_emb.dim() != 2 or test_emb.shape[1] != train_emb.shape[1]:
        raise ValueError(
            f"test embeddings must be [N, {train_emb.shape[1]}], got shape {tuple(test_emb.shape)}"
        )
    if train_emb.shape[0] == 0:
        raise ValueError("no training embeddings")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    classes = _num_classes(train_labels, num_classes)
    k = min(k, train_emb.shape[0])
    train = cosine_normalize(train_emb)
    test = cosine_normalize(test_emb.to(train.device))
    predictions = []
    for start in range(0, test.shape[0], chunk_size):
        sims = test[start : start + chunk_size] @ train.T  # [c, N_train]
        top_sims, top_idx = sims.topk(k, dim=1)
        weights = (top_sims / temperature).exp()
        votes = torch.zeros(sims.shape[0], classes, device=sims.device, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        predictions.append(votes.argmax(dim=1))
    if not predictions:
        return torch.zeros(0, dtype=torch.long, device=train.device)
    return torch.cat(predictions)


def knn_top1(
    train_emb: torch.Tensor,
    train_labels: torch.Tensor,
    test_emb: torch.Tensor,
    test_labels: torch.Tensor,
    **kwargs: Any,
) -> float:
    """Top-1 accuracy in [0, 1] of :func:`knn_classify` (keyword arguments are passed through)."""
    predictions = knn_classify(train_emb, train_labels, test_emb, **kwargs)
    test_labels = torch.as_tensor(test_labels, device=predictions.device).long()
    if test_labels.shape != predictions.shape:
        raise ValueError(
            f"test labels have shape {tuple(test_labels.shape)}; expected {tuple(predictions.shape)}"
        )
    return float((predictions == test_labels).float().mean())


def linear_probe(
    train_emb: torch.Tensor,
    train_labels: torch.Tensor,
    test_emb: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-4,
    num_classes: int | None = None,
) -> float:
    """Top-1 test accuracy of multinomial logistic regression on frozen, L2-normalised embeddings.

    Minimises ``CE(W x + b, y) + weight_decay / 2 * ||W||^2`` with full-batch L-BFGS (strong-Wolfe
    line search, at most ``epochs`` iterations, each a pass over the whole training set), the linear
    evaluation protocol of CLIP (Radford et al., 2021) with torch instead of scikit-learn. Weights start
    at zero, so the result is deterministic (the objective is convex) and needs no seed.
    """
    train_labels = torch.as_tensor(train_labels, device=train_emb.device).long()
    _check_labelled(train_emb, train_labels, "train")
    classes = _num_classes(train_labels, num_classes)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    with torch.inference_mode(False), torch.enable_grad():
        x = cosine_normalize(train_emb).clone()
        y = train_labels.clone()
        probe = nn.Linear(x.shape[1], classes).to(x.device)
        nn.init.zeros_(probe.weight)
        nn.init.zeros_(probe.bias)
        optimizer = torch.optim.LBFGS(
            probe.parameters(), lr=lr, max_iter=epochs, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(probe(x), y) + 0.5 * weight_decay * probe.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            test = cosine_normalize(test_emb.to(x.device)).clone()
            predictions = probe(test).argmax(dim=1)
    test_labels = torch.as_tensor(test_labels, device=predictions.device).long()
    if test_labels.shape != predictions.shape:
        raise ValueError(
            f"test labels have shape {tuple(test_labels.shape)}; expected {tuple(predictions.shape)}"
        )
    return float((predictions == test_labels).float().mean())


class KNNEvaluator:
    """Embed a labelled train and test set with a frozen image encoder; report weighted-kNN top-1.

    ``train_dataset``/``test_dataset`` are sequences of rows (a list or a ``datasets.Dataset``);
    ``collate_fn(rows)`` returns ``{"pixel_values": ..., "labels": ...}`` (every key except ``labels``
    goes to ``model(**inputs).embeddings``). With ``linear_probe=True`` also reports
    ``{name}_linear_probe_top1`` from :func:`linear_probe`.
    """

    def __init__(
        self,
        train_dataset: Any,
        test_dataset: Any,
        *,
        collate_fn: Callable[[list[Any]], Mapping[str, Any]],
        k: int = 200,
        temperature: float = 0.1,
        batch_size: int = 256,
        name: str = "knn",
        linear_probe: bool = False,
        linear_probe_kwargs: Mapping[str, Any] | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.collate_fn = collate_fn
        self.k = k
        self.temperature = temperature
        self.batch_size = batch_size
        self.name = name
        self.linear_probe = linear_probe
        self.linear_probe_kwargs = dict(linear_probe_kwargs or {})
        self.show_progress_bar = show_progress_bar

    def embed(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(train_emb, train_labels, test_emb, test_labels)`` on the model's device."""
        with evaluating(model):
            device = model_device(model)
            train_emb, train_labels = self._encode(model, self.train_dataset, device, "train")
            test_emb, test_labels = self._encode(model, self.test_dataset, device, "test")
        # clone outside inference mode so the linear probe may use them in autograd
        return train_emb.clone(), train_labels.clone(), test_emb.clone(), test_labels.clone()

    def _encode(
        self, model: nn.Module, dataset: Any, device: torch.device, split: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_rows(
            model,
            dataset,
            self.collate_fn,
            device=device,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            desc=f"{self.name}: {split}",
        )

    def __call__(self, model: nn.Module) -> dict[str, float]:
        train_emb, train_labels, test_emb, test_labels = self.embed(model)
        with torch.no_grad():
            top1 = knn_top1(
                train_emb, train_labels, test_emb, test_labels, k=self.k, temperature=self.temperature
            )
        results = {f"{self.name}_top1": top1}
        if self.linear_probe:
            results[f"{self.name}_linear_probe_top1"] = linear_probe(
                train_emb, train_labels, test_emb, test_labels, **self.linear_probe_kwargs
            )
        return results
