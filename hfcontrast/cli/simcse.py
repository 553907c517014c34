"""The text recipe's objective flags and choice: SimCSE (Gao et al. 2021, with queue, momentum and GISTEmbed's
guide), scored pairs (CoSENT / AnglE / cosine MSE) or distillation, from what the data and the flags ask for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..objectives import ContrastiveObjective, ScoredPairs, SimCSE
from .flags import NegativeArguments, flag_errors
from .text import TextDataArguments, TextTechniqueArguments, distillation_objective, text_guide, view_columns

SCORED_METHODS = {"cosent": "CoSENT", "angle": "AnglE", "cosine_mse": "cosine MSE"}


@dataclass
class ObjectiveArguments:
    temperature: float = field(default=0.05, metadata={"help": "Softmax temperature tau."})
    hard_negative_weight: float = field(default=0.0, metadata={"help": "SimCSE hard-negative logit weight."})
    symmetric: bool = field(default=False, metadata={"help": "Average with the positive->anchor direction."})
    queue_size: int = field(default=0, metadata={"help": "Keep K past positives as extra negatives."})
    momentum: float | None = field(default=None, metadata={"help": "Encode positives with an EMA copy (e.g. 0.999)."})
    scored_loss: str = field(
        default="cosent",
        metadata={"help": "With --score_column: cosent (Su 2022) | angle (AnglE, Li & Li 2023) | cosine_mse (SBERT); "
                  "the ranking losses' scale is 1 / --temperature (20)."},
    )  # fmt: skip
    angle_cosine_weight: float = field(
        default=0.0, metadata={"help": "--scored_loss angle: add this weight times CoSENT (AnglE's combined objective)."}
    )


def text_objective(
    objective_args: ObjectiveArguments,
    negative_args: NegativeArguments,
    techniques: TextTechniqueArguments,
    data_args: TextDataArguments,
    sources: dict[str, Any],
    tokenizer: Any,
) -> tuple[ContrastiveObjective, dict[str, Any], dict[str, Any]]:
    """``(objective, training datasets, collator keywords)``: scored pairs with ``--score_column``, distillation
    with a teacher, else SimCSE (guided with ``--guide_model_name_or_path``). Flags that do not apply are refused."""
    masking = negative_args.false_negative_masking
    columns: dict[str, Any] = {  # false-negative ids (an id column, else the normalised positive text), SupCon labels
        "id_column": negative_args.duplicate_id_column if masking else None,
        "ids_from_text": masking and negative_args.duplicate_id_column is None,
        "label_column": negative_args.supcon_label_column, "prompts": techniques.view_prompts,
    }  # fmt: skip
    args, scored = objective_args, data_args.score_column is not None
    if techniques.guide_model_name_or_path is not None and (scored or techniques.distills):
        raise ValueError("--guide_model_name_or_path masks InfoNCE negatives: not with --score_column or a teacher")
    if scored:
        if (args.queue_size or args.momentum is not None or negative_args.config.active
                or negative_args.chunking is not None or techniques.distills):
            raise ValueError("--score_column trains on the pairs' scores: drop --queue_size, --momentum, the negative "
                             "flags and the teacher")  # fmt: skip
        with flag_errors(ObjectiveArguments):
            objective: ContrastiveObjective = ScoredPairs(
                args.scored_loss, scale=1.0 / args.temperature,  # type: ignore[arg-type]
                cosine_weight=args.angle_cosine_weight, matryoshka=negative_args.matryoshka,
            )  # fmt: skip
        return objective, sources, columns | {"score_column": data_args.score_column, "score_scale": data_args.score_scale}
    text_columns = {name: view_columns(d.column_names, data_args) for name, d in sources.items()}
    if techniques.distills:
        if args.queue_size or args.momentum is not None or negative_args.active:
            raise ValueError("distillation follows the teacher's scores: drop --queue_size, --momentum and the negative flags")
        objective, sources, extra = distillation_objective(techniques, sources, text_columns, tokenizer, args.temperature)
        return objective, sources, columns | extra
    guide, sources, extra = text_guide(techniques, sources, text_columns, tokenizer)
    with flag_errors(ObjectiveArguments, TextTechniqueArguments):
        objective = SimCSE(
            args.temperature, hard_negative_weight=args.hard_negative_weight, symmetric=args.symmetric,
            queue_size=args.queue_size, momentum=args.momentum, guide=guide, **negative_args.loss_options,
        )  # fmt: skip
    return objective, sources, columns | extra


def print_text_results(results: dict[str, float], validation_file: str, retrieval: bool) -> None:
    """STS before / after (and at each Matryoshka width), and nDCG@10 / MRR@10 when a retrieval evaluator ran."""
    print(f"\nSTS ({Path(validation_file).name}) Spearman before: {results['before_sts_spearman']:.4f}  "
          f"after: {results['eval_sts_spearman']:.4f}")  # fmt: skip
    for key in sorted(k for k in results if k.startswith("eval_sts_dim_") and k.endswith("spearman")):
        print(f"  {key[len('eval_'):]}: {results[key]:.4f}")
    if retrieval:
        print(f"retrieval nDCG@10 before: {results['before_ir_ndcg@10']:.4f}  after: {results['eval_ir_ndcg@10']:.4f}"
              f"  (MRR@10 {results['before_ir_mrr@10']:.4f} -> {results['eval_ir_mrr@10']:.4f})")  # fmt: skip
