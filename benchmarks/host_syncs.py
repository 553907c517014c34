"""Host syncs per optimizer step, every family, with sentence-transformers in the same run.

    python benchmarks/host_syncs.py          # every family, 18 counted steps each (~2 min on 2 CPU cores)
    python benchmarks/host_syncs.py --smoke  # two families and the peer, 4 steps

A GPU step is slow when the host waits for the device. The waits are the ATen operators that read a tensor's
values on the host (``.item()``, ``bool(t)``, boolean indexing, ``.nonzero()``, ...): the same operators run on
a CPU, so they are counted here with :class:`hfcontrast.host_syncs.HostSyncCounter` (a ``TorchDispatchMode``)
over the steps after a warm-up, with logging every 1000 steps (a step that logs reads its numbers on purpose).
Every family trains a tiny random model built from a config through the short path
(``ContrastiveTrainer(model=..., objective=..., train_dataset=...)``): text on the packaged SNLI triplets (batch
32), images and image-text on random images (batch 16). The peer: ``SentenceTransformerTrainer`` with
``MultipleNegativesRankingLoss`` on the same triplets and the same BERT. Each row also lists where the syncs
come from (file:line of the innermost frame outside torch).

The budget (``tests/test_host_syncs.py`` asserts it): text at most sentence-transformers' count; every other
family at most ``Trainer``'s own two (its NaN filter of the logged loss) plus the guard's one.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, apply_smoke, base_parser, format_table, machine_info, save_results

NAME = "host_syncs"
NLI = SHARED_DATA / "nli" / "snli_dev_triplets.csv"
TEXT_BATCH, IMAGE_BATCH, SIZE = 32, 16, 16
#: Trainer's own syncs per step (``logging_nan_inf_filter``: isnan and isinf of the step's loss) + the guard's.
TRAINER_SYNCS, GUARD_SYNCS = 2, 1


# ----------------------------------------------------------------------------- tiny models and data
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from hfcontrast.demo import default_text_model

    return AutoTokenizer.from_pretrained(default_text_model())


def bert_config(**overrides: Any) -> Any:
    from transformers import BertConfig

    values = dict(vocab_size=tokenizer().vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    return BertConfig(**{**values, **overrides})


def text_model(**kwargs: Any) -> Any:
    from hfcontrast import ContrastiveTextConfig, ContrastiveTextModel

    return ContrastiveTextModel(ContrastiveTextConfig(backbone_config=bert_config(), pooler="mean", **kwargs))


def vit_config() -> Any:
    from transformers import ViTConfig

    return ViTConfig(image_size=SIZE, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32)  # fmt: skip


def vision_model(**kwargs: Any) -> Any:
    from hfcontrast import ContrastiveVisionConfig, ContrastiveVisionModel

    values = dict(backbone_config=vit_config(), projection_dim=8, projection_hidden_dim=16)
    return ContrastiveVisionModel(ContrastiveVisionConfig(**{**values, **kwargs}))


def dual_model(**kwargs: Any) -> Any:
    from hfcontrast import ContrastiveDualEncoder, ContrastiveDualEncoderConfig

    vision = vit_config()
    text = bert_config(hidden_size=16, num_hidden_layers=1, intermediate_size=32)
    config = ContrastiveDualEncoderConfig(vision_config=vision, text_config=text, projection_dim=8, **kwargs)
    return ContrastiveDualEncoder(config)


def triplets(rows: int) -> Any:
    import datasets

    data = datasets.load_dataset("csv", data_files=str(NLI), split="train")
    return data.select(range(min(rows, len(data))))


def images(rows: int, captions: bool = False) -> Any:
    import datasets
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)) for _ in range(rows)]
    columns: dict[str, Any] = {"image": pictures}
    if captions:
        columns["caption"] = triplets(rows)["sent0"]
    return datasets.Dataset.from_dict(columns)


# ----------------------------------------------------------------------------- the families
Setup = tuple[Any, Any, Any, dict[str, Any]]  # model, objective, dataset, extra trainer arguments


def _text(objective: Callable[[], Any], columns: tuple[str, ...] = ("sent0", "sent1", "hard_neg"), **args: Any) -> Callable[[int], Setup]:
    def build(rows: int) -> Setup:
        data = triplets(rows).select_columns(list(columns))
        if columns == ("sent0",):
            data = data.rename_column("sent0", "text")
        return text_model(), objective(), data, {"processing_class": tokenizer(), **args}

    return build


def _image(objective: Callable[[], Any], **model: Any) -> Callable[[int], Setup]:
    return lambda rows: (vision_model(**model), objective(), images(rows), {})


def _clip(objective: Callable[[], Any], **model: Any) -> Callable[[int], Setup]:
    return lambda rows: (dual_model(**model), objective(), images(rows, captions=True), {"processing_class": tokenizer()})


def families() -> dict[str, tuple[str, Callable[[int], Setup]]]:
    """``{name: (kind, build)}``; ``kind`` is ``text`` (budget: the peer's count) or ``other``."""
    from hfcontrast import BYOL, CLIP, DINO, NNCLR, PCL, SigLIP, SimCLR, SimCSE, SimSiam, SwAV
    from hfcontrast.objectives import InBatchKL, MarginMSE, MatryoshkaConfig, MoCo

    def teacher() -> Any:
        return text_model()

    return {
        "simcse-unsupervised": ("text", _text(lambda: SimCSE(0.05), ("sent0",))),
        "simcse-supervised": ("text", _text(lambda: SimCSE(0.05))),
        "simcse-queue": ("text", _text(lambda: SimCSE(0.05, queue_size=64))),
        "simcse-queue-momentum": ("text", _text(lambda: SimCSE(0.05, queue_size=64, momentum=0.99))),
        "simcse-matryoshka": ("text", _text(lambda: SimCSE(0.05, matryoshka=MatryoshkaConfig((32, 16, 8))))),
        "simcse-gradcache": ("text", _text(lambda: SimCSE(0.05), gradcache_chunk_size=16)),
        "simcse-gradcache-tokens": ("text", _text(lambda: SimCSE(0.05), gradcache_tokens=256)),
        "distill-in-batch-kl": ("text", _text(lambda: InBatchKL(teacher=teacher()), ("sent0", "sent1"))),
        "distill-margin-mse": ("text", _text(lambda: MarginMSE(teacher=teacher()))),
        "simclr": ("other", _image(lambda: SimCLR(0.2))),
        "moco-v2": ("other", _image(lambda: MoCo(queue_size=64))),
        "moco-v3": ("other", _image(lambda: MoCo(version="v3", predictor_hidden_dim=16))),
        "byol": ("other", _image(lambda: BYOL(predictor_hidden_dim=16))),
        "simsiam": ("other", _image(lambda: SimSiam(predictor_hidden_dim=16))),
        "nnclr": ("other", _image(lambda: NNCLR(0.2, support_size=64))),
        "swav": ("other", _image(lambda: SwAV(num_prototypes=8, queue_size=32))),
        "dino": ("other", _image(lambda: DINO(out_dim=32, hidden_dim=16, bottleneck_dim=8), projection="none")),
        "pcl": ("other", _image(lambda: PCL(num_clusters=(4, 8), queue_size=64, every_n_steps=1000, start_step=1))),
        "clip": ("other", _clip(lambda: CLIP(queue_size=32))),
        "siglip": ("other", _clip(lambda: SigLIP(), logit_bias_init_value=-10.0)),
    }


# ----------------------------------------------------------------------------- counting
class _Counted:
    """Counts the syncs inside optimizer steps ``warmup + 1 ..`` (the data loader's work comes before
    ``on_step_begin`` and is not counted; nor is a cluster refresh, which runs on purpose at its step)."""

    def __init__(self, warmup: int) -> None:
        from transformers import TrainerCallback

        from hfcontrast.host_syncs import HostSyncCounter

        outer = self
        self.warmup, self.steps, self.counter = warmup, 0, HostSyncCounter()
        self.active = False

        class Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.global_step >= outer.warmup:
                    outer.counter.__enter__()
                    outer.active = True

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if outer.active:
                    outer.counter.__exit__(None, None, None)
                    outer.active, outer.steps = False, outer.steps + 1

        self.callback = Callback()

    def result(self) -> dict[str, Any]:
        steps = max(self.steps, 1)
        return {"steps": self.steps, "per_step": self.counter.total / steps, "literals_per_step": self.counter.literals / steps,
                "sites": {site: count / steps for site, count in self.counter.by_site().items()},
                "literal_sites": {site: count / steps for site, count in self.counter.literal_sites.most_common()}}  # fmt: skip


def _arguments(out: str, batch: int, steps: int) -> dict[str, Any]:
    return dict(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=1e-4, logging_steps=1000,
                save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, seed=0, dataloader_drop_last=True)  # fmt: skip


def train_family(name: str, steps: int, callbacks: list[Any] = (), **overrides: Any) -> Any:  # type: ignore[assignment]
    """``steps`` optimizer steps of family ``name`` through the short path; returns the trainer."""
    import torch

    from hfcontrast import ContrastiveTrainer, ContrastiveTrainingArguments

    kind, build = families()[name]
    batch = TEXT_BATCH if kind == "text" else IMAGE_BATCH
    torch.manual_seed(0)
    model, objective, data, extra = build(batch * steps)
    extra = {**extra, **overrides}
    processing = extra.pop("processing_class", None)
    with tempfile.TemporaryDirectory() as out:
        args = ContrastiveTrainingArguments(**{**_arguments(out, batch, steps), **extra})
        trainer = ContrastiveTrainer(model=model, args=args, objective=objective, train_dataset=data,
                                     processing_class=processing, callbacks=list(callbacks))  # fmt: skip
        trainer.train()
    return trainer


def count_family(name: str, steps: int, warmup: int) -> dict[str, Any]:
    counted = _Counted(warmup)
    train_family(name, steps, [counted.callback])
    return {"family": name, "kind": families()[name][0], **counted.result()}


def count_sentence_transformers(steps: int, warmup: int) -> dict[str, Any]:
    import torch
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import BertModel

    torch.manual_seed(0)
    counted = _Counted(warmup)
    with tempfile.TemporaryDirectory() as folder:
        BertModel(bert_config()).save_pretrained(folder)
        tokenizer().save_pretrained(folder)
        model = SentenceTransformer(folder, device="cpu")
        model.max_seq_length = 32
        data = triplets(TEXT_BATCH * steps).select_columns(["sent0", "sent1", "hard_neg"])
        args = SentenceTransformerTrainingArguments(**_arguments(folder + "/out", TEXT_BATCH, steps))
        SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model),
                                   callbacks=[counted.callback]).train()  # fmt: skip
    return {"family": "sentence-transformers MNRL", "kind": "peer", **counted.result()}


def budget(kind: str, peer: float | None) -> float:
    """The target of a family: the peer's count for text (when measured), else Trainer's own plus the guard's."""
    if kind == "text" and peer is not None:
        return peer
    return TRAINER_SYNCS + GUARD_SYNCS


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--families", nargs="*", default=None)
    a = parser.parse_args()
    smoke = apply_smoke(a, steps=4, warmup=2, families=["simcse-supervised", "simclr"])
    import os

    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(1)
    names = a.families or list(families())
    rows = []
    try:
        peer = count_sentence_transformers(a.steps, a.warmup)
    except ImportError as error:
        if not smoke:
            raise
        print(f"[smoke] sentence-transformers is not installed ({error}): counting hfcontrast alone")
        peer = None
    runs = [peer] if peer else []
    for name in names:
        run = count_family(name, a.steps, a.warmup)
        run["budget"] = budget(run["kind"], peer["per_step"] if peer else None)
        run["within_budget"] = run["per_step"] <= run["budget"]
        runs.append(run)
        print(f"[{name}] {run['per_step']:.2f} syncs per step (budget {run['budget']:g})", flush=True)
    for run in runs:
        where = ", ".join(f"{count:g} {site}" for site, count in run["sites"].items())
        rows.append([run["family"], f"{run['per_step']:.2f}", f"{run.get('budget', '-')}", f"{run['literals_per_step']:.2f}",
                     where or "-"])  # fmt: skip
    print(format_table(["training", "host syncs per step", "budget", "tensor literals per step", "where (per step)"], rows))
    payload = {"name": NAME, "machine": machine_info(), "settings": {"steps": a.steps, "warmup": a.warmup,
               "text_batch": TEXT_BATCH, "image_batch": IMAGE_BATCH}, "runs": runs}  # fmt: skip
    path = save_results(Path(a.results_dir), NAME, payload)
    print(f"results: {path}")
    if not smoke and not all(run.get("within_budget", True) for run in runs):
        print(json.dumps([r["family"] for r in runs if not r.get("within_budget", True)]))


if __name__ == "__main__":
    main()
