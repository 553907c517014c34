"""SelfCon (Bae et al. 2023, *Self-Contrastive Learning: Single-viewed Supervised Contrastive Framework using
Sub-network*): an intermediate stage of the encoder gets an exit of its own (pooling and a projector), and its
output is contrasted with the final output of the same view.

Each image gives four embeddings, the final output and the exit's for both views (the paper's multi-view
SelfCon-M; its exit is a pooled stage and a projector here, where the paper's sub-network also has blocks of its
own), and the loss is SupCon
(:func:`~hfcontrast.losses.supcon_loss`) over them: unsupervised, the other three are the anchor's positives;
supervised, every embedding of its class too. Both exits share the encoder below the exit's stage, so the lower
layers learn from two depths at once. The exit (``exit_head``) is a training head: the exported model never holds it.

The exit's input is read by a forward hook on the stage's module during the model's last forward, the trainer's of
the two views (one forward for the views of one image size, as the trainer runs them; not with GradCache); the loss sees the global batch (every
process's rows, gathered with gradient), so it is the same on every process, as Barlow Twins'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import gather_detached, gather_with_grad
from ..losses import supcon_loss
from ..models.heads import Predictor
from .base import ContrastiveObjective, ObjectiveOutput, embedding_width, pair_stats


def pooled(output: Any) -> Tensor:
    """A stage's output as one vector per row: a CNN's feature map averaged over space, a transformer's tokens over
    the sequence."""
    hidden = output[0] if isinstance(output, tuple) else output
    if hidden.dim() == 4:
        return hidden.mean(dim=(2, 3))
    if hidden.dim() == 3:
        return hidden.mean(dim=1)
    return hidden


def middle_stage(encoder: nn.Module) -> str:
    """The default exit: the middle one of the backbone's stages (a ResNet's ``stages.k``, a ViT's ``layer.k``),
    the place of the paper's exit on ResNets (after the second of four stages)."""
    for group in ("backbone.encoder.stages", "backbone.encoder.layer", "backbone.layers"):
        stages = [name for name, _ in encoder.named_modules() if name.rsplit(".", 1)[0] == group]
        if len(stages) >= 2:
            return stages[(len(stages) - 1) // 2]
    raise ValueError("SelfCon: no stages found under backbone.encoder.stages / .layer: pass exit_module")


class SelfCon(ContrastiveObjective):
    """SelfCon over views ``query`` and ``key``, the exit at module ``exit_module`` of the model (a name of
    ``model.named_modules()``, e.g. ``backbone.encoder.stages.1`` of a ResNet, ``backbone.encoder.layer.2`` of a ViT).

    Args:
        exit_module: the stage whose output the exit reads (default: :func:`middle_stage`).
        temperature: SupCon's ``tau``.
        supervised: positives by class too (``batch["labels"]``, from the collator's ``label_column``).
        hidden_dim: the exit projector's hidden width (default: the final embedding's).
        encoder / embedding_dim: the model (its exit stage and its training-time embedding width).
        gather: the loss over every process's rows.
    """

    online_views = ("query", "key")
    augmentation = "simclr"
    tag = "selfcon"
    exit_head: nn.Module

    def __init__(
        self,
        exit_module: str | None = None,
        temperature: float = 0.1,
        *,
        supervised: bool = False,
        hidden_dim: int | None = None,
        encoder: nn.Module | None = None,
        gather: bool = True,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__()
        self.exit_module, self.temperature, self.supervised = exit_module, temperature, supervised
        self.hidden_dim, self.gather = hidden_dim, gather
        self._captured: list[Tensor] = []
        if encoder is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The exit's projector, sized by one probe forward of the model, and the hook that reads the stage."""
        if encoder is None:
            raise ValueError("SelfCon reads a stage of the model: bind it to the model")
        modules = dict(encoder.named_modules())
        if self.exit_module is None:
            self.exit_module = middle_stage(encoder)
        if self.exit_module not in modules:
            stages = [name for name in modules if name.count(".") <= 3 and name.startswith(("backbone.encoder", "backbone.layers"))]
            raise ValueError(f"SelfCon: the model has no module {self.exit_module!r}; its stages include {stages[:12]}")
        width = embedding_width(encoder, None, "SelfCon")
        stage_width = self._probe(encoder, modules[self.exit_module])
        self.exit_head = Predictor(stage_width, self.hidden_dim or width, width)
        self.remove_hooks()
        self._hooks = [encoder.register_forward_pre_hook(self._clear),  # each forward of the model starts anew
                       modules[self.exit_module].register_forward_hook(self._capture)]  # fmt: skip

    def remove_hooks(self) -> None:
        """Stop reading the model's stage (e.g. after training, before using the model elsewhere)."""
        for handle in getattr(self, "_hooks", []):
            handle.remove()
        self._hooks = []

    def _probe(self, encoder: nn.Module, stage: nn.Module) -> int:
        config = getattr(getattr(encoder, "config", None), "backbone_config", None)
        channels, size = getattr(config, "num_channels", 3), getattr(config, "image_size", 32)
        seen: list[Tensor] = []
        handle = stage.register_forward_hook(lambda _m, _i, out: seen.append(pooled(out)))
        was_training = encoder.training
        try:
            encoder.eval()
            with torch.no_grad():
                weight = next(encoder.parameters())
                encoder(pixel_values=torch.zeros(1, channels, size, size, device=weight.device, dtype=weight.dtype))
        finally:
            handle.remove()
            encoder.train(was_training)
        return int(seen[0].shape[-1])

    def _clear(self, module: nn.Module, inputs: Any) -> None:
        self._captured = []

    def _capture(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._captured.append(pooled(output))

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        query, key = embeddings["query"], embeddings["key"]
        captured, self._captured = self._captured, []
        rows = query.shape[0]
        if sum(c.shape[0] for c in captured) != 2 * rows:
            raise RuntimeError(f"SelfCon read {sum(c.shape[0] for c in captured)} rows at {self.exit_module!r} for "
                               f"{rows} rows of two views: it needs the trainer's forwards of the training views")  # fmt: skip
        stage = torch.cat(captured)
        if query.requires_grad and not stage.requires_grad:  # flags, no device read
            raise RuntimeError(f"SelfCon: the output of {self.exit_module!r} has no gradient (a replayed forward: "
                               "gradient checkpointing or GradCache), so the exit would not train the layers below it")  # fmt: skip
        head_dtype = next(self.exit_head.parameters()).dtype
        sub_query, sub_key = self.exit_head(stage.to(head_dtype)).to(query.dtype).split(rows)
        features = torch.stack([query, key, sub_query, sub_key], dim=1)
        labels = batch.get("labels") if self.supervised else None
        if self.supervised and labels is None:
            raise KeyError("SelfCon(supervised=True) needs batch['labels']: give the collator a label_column")
        labels = labels.to(query.device) if labels is not None else None
        if self.gather:
            b, v, d = features.shape
            features = gather_with_grad(features.reshape(b, v * d))[0].reshape(-1, v, d)
            labels = gather_detached(labels).to(features.device) if labels is not None else None
        out = supcon_loss(features, labels, temperature=self.temperature)
        stats = pair_stats(query, key, None, None) | {"exit_final_cosine": nn.functional.cosine_similarity(
            sub_query.detach(), query.detach()).mean()}  # fmt: skip
        return ObjectiveOutput(out.loss, stats)
