"""GradCache (Gao, Zhang, Han, Callan 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup"): the gradient of a contrastive loss over a large batch with the activation memory of a
small chunk.

A contrastive loss couples every row of the batch, so the batch cannot be split into independent
micro-batches. But the loss depends on the encoder only through the embeddings ``e = f_theta(x)``:

``dL/dtheta = sum_i (dL/de_i) (de_i/dtheta)``

so the step runs in three stages:

1. **Embed** every online view in chunks of ``chunk_size`` rows without an autograd graph, recording
   the RNG state (CPU and the CUDA device) before each chunk.
2. **Loss**: the concatenated embeddings become leaves that require grad; the objective gathers them
   across processes (with gradient), adds queued negatives and momentum keys (its own no-grad
   encoders run here, on the full batch, exactly as without GradCache); ``backward`` gives
   ``g_i = dL/de_i``, including what the other processes' losses send back through the gather, and the
   gradients of the objective's own parameters (predictors, the CLIP temperature).
3. **Replay** each chunk with a graph, restoring its RNG state so dropout (and any random op in
   ``forward``) draws the same masks, and backpropagate ``g`` for that chunk:
   ``torch.autograd.backward(e_chunk, g_chunk)``. Parameter gradients accumulate over the chunks.

In :class:`~hfcontrast.trainer.ContrastiveTrainer` the three stages are :class:`GradCache`'s ``embed``
(called by ``compute_loss``), Trainer's own ``training_step`` backward (so its loss scaling for gradient
accumulation, AMP and ``num_items_in_batch`` applies unchanged) and ``replay``. :func:`gradcache_step` runs
all three outside a trainer.

The result is the gradient of the very loss computed in stage 2: equal (up to float summation order)
to an uncached step whose forward processes the rows in the same chunks. Without dropout or
batch-coupled layers it equals the plain full-batch step.

**DDP** (``find_unused_parameters=False``, the project default). DDP all-reduces during the backward
that follows a forward run with gradient sync on, and expects every parameter's gradient in that one
backward. All replays except the last chunk of each view group run under ``no_sync``; the last chunks
of all groups are then forwarded with sync on and backpropagated together, with a zero-valued term
touching every trainable parameter so that parameters used only by the objective (``logit_scale``),
whose gradient came in stage 2, are reduced too. Inside a gradient-accumulation micro-batch that does
not sync (the Trainer's outer ``no_sync``), nothing syncs. Each process must run the same number of
chunks (accelerate's even batches).

**BatchNorm** in training mode normalises each chunk with the chunk's statistics ("ghost" batch norm):
the step then equals an uncached step with the batch split into the same chunks, not the full-batch
BN. Running statistics are snapshotted before stage 1 and restored after it, so they are updated
once per chunk, by the replay, as in an ordinary chunked forward. Prefer BN-free heads (``linear``
projection, ViT, LayerNorm) when GradCache must equal the full-batch step.

Padding: text rows are chunked longest-first and each chunk is cut to its longest row, from the lengths the
collator measured on the host (no device read); the embeddings go back to the batch order before the loss.
With a token budget (``tokens``, ``--gradcache_tokens``) a chunk holds as many rows as fit ``rows x width <=
tokens``: short rows travel in large chunks, long ones in small, at about the same memory. This changes
nothing but the cost: the chunks of a large batch carry far less padding than one padded batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.parallel import DistributedDataParallel

from ..collators.lengths import ViewLengths
from ..objectives.base import ContrastiveObjective, ObjectiveOutput
from .views import group_lengths, group_views, model_embeddings, plan_chunks, unsort_rows


@dataclass(frozen=True)
class RngState:
    """The CPU generator state and, for a CUDA chunk, that device's generator state."""

    cpu: Tensor
    cuda: tuple[int, Tensor] | None = None

    @classmethod
    def capture(cls, device: torch.device) -> RngState:
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            return cls(torch.get_rng_state(), (index, torch.cuda.get_rng_state(index)))
        return cls(torch.get_rng_state())

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from this state; the global RNG state is restored afterwards."""
        devices = [self.cuda[0]] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda[1], self.cuda[0])
            yield


@dataclass
class _Chunk:
    inputs: dict[str, Tensor]
    rng: RngState


@dataclass
class _Group:
    """Views embedded by one encoder: their chunks (rows in ``order``) and the leaf of their embeddings."""

    names: list[str]
    sizes: list[int]
    order: Tensor | None
    chunks: list[_Chunk]
    leaf: Tensor

    def chunk_grads(self) -> tuple[Tensor, ...] | None:
        """Stage 2's ``dL/de`` cut like the chunks (``None`` if the loss did not use these views)."""
        if self.leaf.grad is None:
            return None
        grad = self.leaf.grad if self.order is None else self.leaf.grad[self.order]
        return torch.split(grad, [next(iter(chunk.inputs.values())).shape[0] for chunk in self.chunks])


def _device(inputs: Mapping[str, Tensor]) -> torch.device:
    return next(iter(inputs.values())).device


@contextlib.contextmanager
def preserved_running_stats(model: nn.Module) -> Iterator[None]:
    """Restore BatchNorm (and other ``_NormBase``) running statistics on exit: stage 1's no-grad pass
    must not update them a second time."""
    saved = [
        (module, {name: buf.clone() for name, buf in module.named_buffers(recurse=False) if buf is not None})
        for module in model.modules()
        if isinstance(module, _NormBase) and module.track_running_stats and module.training
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, buffers in saved:
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)


def _ddp_will_sync(model: nn.Module) -> bool:
    """True when ``model`` is DDP-wrapped and the next backward all-reduces (not inside ``no_sync``)."""
    return isinstance(model, DistributedDataParallel) and bool(model.require_backward_grad_sync)


def _no_sync(model: nn.Module) -> contextlib.AbstractContextManager[Any]:
    return model.no_sync() if isinstance(model, DistributedDataParallel) else contextlib.nullcontext()


class GradCache:
    """One step's GradCache, in two halves around a backward that the caller runs.

    :meth:`embed` is stage 1: every view embedded in chunks without a graph; it returns the embeddings as
    leaves that require grad. The caller computes the loss from them and backpropagates it (the trainer
    lets ``Trainer.training_step`` do it, with its gradient-accumulation, AMP and ``num_items_in_batch``
    scaling), which fills the leaves' ``.grad``: stage 2. :meth:`replay` is stage 3: each chunk forwarded
    again from its RNG state, its cached gradient pushed through it. ``context`` is entered around every
    forward (e.g. autocast).
    """

    def __init__(
        self,
        chunk_size: int,
        context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        tokens: int | None = None,
    ) -> None:
        self.chunk_size, self.context, self.tokens = chunk_size, context, tokens
        self.groups: list[_Group] = []

    def embed(
        self, model: nn.Module, views: Mapping[str, Mapping[str, Tensor]], lengths: ViewLengths | None = None
    ) -> dict[str, Tensor]:
        """Stage 1: ``{view: leaf [rows, D]}``; the chunks and their RNG states are kept for :meth:`replay`.
        ``lengths`` (the collator's) plan the text chunks on the host; ``tokens`` caps each chunk's tokens."""
        self.groups = []
        with torch.no_grad(), preserved_running_stats(model):
            for names, inputs, sizes in group_views(views):
                order, parts = plan_chunks(inputs, self.chunk_size, group_lengths(names, lengths), self.tokens)
                chunks, outputs = [], []
                for part in parts:
                    chunks.append(_Chunk(part, RngState.capture(_device(part))))
                    with self.context():
                        outputs.append(model_embeddings(model, part))
                leaf = unsort_rows(torch.cat(outputs), order).requires_grad_(True)
                self.groups.append(_Group(names, sizes, order, chunks, leaf))
        embeddings: dict[str, Tensor] = {}
        for group in self.groups:  # outside no_grad: the views of each leaf track it
            embeddings.update(zip(group.names, torch.split(group.leaf, group.sizes)))
        return embeddings

    def replay(self, model: nn.Module) -> None:
        """Stage 3, after the loss's backward: parameter gradients are accumulated into ``.grad``."""
        sync = _ddp_will_sync(model)
        deferred: list[tuple[_Chunk, Tensor]] = []
        with _no_sync(model):
            for group in self.groups:
                grads = group.chunk_grads()
                if grads is None:  # the objective did not use these views
                    continue
                for index, (chunk, grad) in enumerate(zip(group.chunks, grads)):
                    if sync and index == len(group.chunks) - 1:
                        deferred.append((chunk, grad))
                        continue
                    with chunk.rng.replay(), self.context():
                        replayed = model_embeddings(model, chunk.inputs)
                    torch.autograd.backward(replayed, grad_tensors=grad.to(replayed.dtype))
        if sync:
            _synced_backward(model, deferred, self.context)
        self.groups = []


def gradcache_step(
    model: nn.Module,
    objective: ContrastiveObjective,
    views: Mapping[str, Mapping[str, Tensor]],
    batch: Mapping[str, Any],
    *,
    chunk_size: int,
    loss_scale: float = 1.0,
    backward: Callable[[Tensor], Any] | None = None,
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    tokens: int | None = None,
    lengths: ViewLengths | None = None,
) -> ObjectiveOutput:
    """One whole GradCache forward/backward outside a trainer; parameter gradients are *accumulated*.

    Args:
        model: the (possibly DDP-wrapped) encoder; ``model(**inputs, use_head=True).embeddings``.
        objective: called once on the full batch's embeddings.
        views: the online views to embed (``{name: {input_name: tensor}}``).
        batch: the whole collated batch (the objective reads ``ids``, raw key views, ...).
        chunk_size: rows per forward.
        loss_scale: the loss is multiplied by this before backward (``1 / gradient_accumulation_steps``).
        backward: how to backpropagate the scaled loss (``accelerator.backward`` for AMP loss scaling);
            default ``Tensor.backward``.
        context: entered around every forward and the objective (e.g. autocast).
        tokens: a token budget per text chunk (see :class:`GradCache`).
        lengths: the collator's row lengths (``batch["lengths"]``), to plan text chunks without a device read.

    Returns:
        The objective's output; ``loss`` is the unscaled loss, detached.
    """
    cache = GradCache(chunk_size, context, tokens=tokens)
    embeddings = cache.embed(model, views, lengths)
    with context():
        output = objective(embeddings, batch)
    scaled = output.loss * loss_scale
    if backward is None:
        scaled.backward()
    else:
        backward(scaled)
    cache.replay(model)
    return ObjectiveOutput(output.loss.detach(), output.stats)


def _synced_backward(
    model: nn.Module,
    deferred: list[tuple[_Chunk, Tensor]],
    context: Callable[[], contextlib.AbstractContextManager[Any]],
) -> None:
    """The one DDP backward that all-reduces: the last chunk of every view group (forwarded with sync
    on) and a zero term over every trainable parameter, so that each parameter's gradient, including
    what stage 2 gave parameters used outside ``forward``, is reduced exactly once."""
    outputs: list[Tensor] = []
    grads: list[Tensor | None] = []
    for chunk, grad in deferred:
        with chunk.rng.replay(), context():
            replayed = model_embeddings(model, chunk.inputs)
        outputs.append(replayed)
        grads.append(grad.to(replayed.dtype))
    touch: Tensor | None = None
    for param in model.parameters():
        if param.requires_grad:
            term = param.sum() * 0.0
            touch = term if touch is None else touch + term
    if touch is not None:
        outputs.append(touch)
        grads.append(None)
    torch.autograd.backward(outputs, grad_tensors=grads)
