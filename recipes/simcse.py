"""SimCSE (Gao et al. 2021): unsupervised (dropout views) or supervised (NLI triplets) sentence embeddings.

    accelerate launch recipes/simcse.py                       # offline demo: MiniLM, wiki sentences, STS-B dev
    accelerate launch recipes/simcse.py --demo supervised     # offline: the packaged SNLI triplets
    accelerate launch recipes/simcse.py --demo sts            # offline: CoSENT on STS-B train's scored pairs
    accelerate launch recipes/simcse.py --demo retrieval      # offline: query -> passage, nDCG@10 (held-out queries)
    accelerate launch recipes/simcse.py --train_file pairs.csv --ir_eval_data beir/scifact   # a real BEIR folder
    accelerate launch recipes/simcse.py --train_file pairs.csv --score_column score --score_scale 5 --scored_loss angle
    accelerate launch recipes/simcse.py --train_file nli.csv  # supervised: sent0,sent1,hard_neg detected
    accelerate launch recipes/simcse.py --config_name bert-config-dir --tokenizer_name tok-dir ...  # random init
    accelerate launch recipes/simcse.py --train_file nli.csv wiki.txt   # several datasets, each batch from one
    accelerate launch recipes/simcse.py --matryoshka_dims 384,256,128,64,32 --prompts '{"anchor": "query: "}'
    accelerate launch recipes/simcse.py --teacher_model_name_or_path big-model --config_overrides num_hidden_layers=2
    accelerate launch recipes/simcse.py --lora_r 8 --lora_target_modules query,value --momentum 0.999
    accelerate launch recipes/simcse.py --demo supervised --guide_model_name_or_path guide-model  # GISTEmbed

Wiring only: arguments -> datasets -> model -> objective -> collator -> ContrastiveTrainer -> artefacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from hfcontrast.cli.flags import NegativeArguments, epochs_replace_steps, flag_errors, given
from hfcontrast.cli.runs import finish_run, start_run, train_with_before_after
from hfcontrast.cli.simcse import SCORED_METHODS, ObjectiveArguments, print_text_results, text_objective
from hfcontrast.cli.text import (
    TextDataArguments,
    TextModelArguments,
    TextTechniqueArguments,
    build_text_model,
    configure_text_model,
    evaluation_length,
    export_text_model,
    ir_evaluator,
    quantized_sts,
    sts_evaluator,
    text_sources,
    text_training_data,
)
from hfcontrast.demo import SNLI_TRIPLETS, STSB_DEV, STSB_TRAIN, WIKI_SENTENCES, data_file, default_text_model
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

DEMO_FILES = {"unsupervised": WIKI_SENTENCES, "supervised": SNLI_TRIPLETS, "sts": STSB_TRAIN, "retrieval": SNLI_TRIPLETS}


@dataclass
class SimCSETrainingArguments(ContrastiveTrainingArguments):
    """Defaults of the offline demo: 60 steps of 64 sentences (a few minutes on 2 idle CPU cores).
    ``output_dir`` defaults to ``outputs/simcse-unsupervised`` or ``outputs/simcse-supervised``."""

    output_dir: str | None = field(default="outputs/simcse-unsupervised")
    max_steps: int = field(default=60)
    per_device_train_batch_size: int = field(default=64)
    learning_rate: float = field(default=1e-5)
    warmup_steps: float = field(default=0)
    logging_steps: float = field(default=10)
    eval_strategy: IntervalStrategy | str = field(default="steps")
    eval_steps: float | None = field(default=30)
    save_strategy: SaveStrategy | str = field(default="no")
    seed: int = field(default=42)
    dataloader_drop_last: bool = field(default=True)


def main() -> None:
    groups = (TextModelArguments, TextDataArguments, ObjectiveArguments, NegativeArguments, TextTechniqueArguments,
              SimCSETrainingArguments)  # fmt: skip
    model_args, data_args, objective_args, negative_args, techniques, training_args = (
        HfArgumentParser(groups).parse_args_into_dataclasses()
    )
    epochs_replace_steps(training_args)
    sources = text_sources(data_args, data_file(DEMO_FILES[data_args.demo]))
    supervised = data_args.anchor_column is not None or any(len(d.column_names) > 1 for d in sources.values())
    scored = data_args.score_column is not None
    mode = objective_args.scored_loss if scored else "supervised" if supervised else "unsupervised"
    if not given("--output_dir"):  # each mode its own default folder: one never overwrites the other
        training_args.output_dir = f"outputs/simcse-{mode}"
    start_run(training_args)
    model, tokenizer = build_text_model(model_args, default_text_model())
    matryoshka = negative_args.matryoshka
    configure_text_model(model, tokenizer, techniques, matryoshka)

    objective, sources, columns = text_objective(objective_args, negative_args, techniques, data_args, sources, tokenizer)
    mix = training_args.multi_dataset_policy if given("--multi_dataset_policy") else None
    train, collator = text_training_data(sources, tokenizer, data_args, mix, training_args.multi_dataset_temperature, **columns)

    validation_file = data_args.validation_file or data_file(STSB_DEV)
    evaluator = sts_evaluator(validation_file, tokenizer, techniques, matryoshka)
    retrieval = ir_evaluator(data_args, tokenizer, techniques, evaluation_length(model))
    metric = "eval_ir_ndcg@10" if retrieval is not None else "eval_sts_spearman"
    if training_args.eval_strategy != "no" and training_args.metric_for_best_model is None:
        training_args.metric_for_best_model = metric
    evaluators = [evaluator] if retrieval is None else [evaluator, retrieval]
    trainer = ContrastiveTrainer(
        model=model, args=training_args, objective=objective, evaluators=evaluators, train_dataset=train,
        train_source=", ".join(sources), data_collator=collator, processing_class=tokenizer,
    )  # fmt: skip

    results = train_with_before_after(trainer)
    if trainer.is_world_process_zero():
        print_text_results(results, validation_file, retrieval is not None)
    export_text_model(trainer, techniques)
    predictions = evaluator.last_predictions
    method = f"SimCSE ({mode})" if not techniques.distills else f"distillation ({techniques.distillation})"
    if scored:
        method = SCORED_METHODS[objective_args.scored_loss]
    finish_run(
        trainer, results, method=method,
        hyperparameters=vars(objective_args) | negative_args.changed() | techniques.changed(),
        train_dataset_name=", ".join(Path(n).name for n in sources),
        base_model=model_args.model_name_or_path or model_args.config_name or "all-MiniLM-L6-v2",
        metric_key=metric, title=method,
        scatter=(evaluator.scores, predictions.tolist()) if predictions is not None else None,
        export=not techniques.save_adapter_only,
        evaluate_export=quantized_sts(evaluator, results) if training_args.quantize else None,
    )  # fmt: skip


if __name__ == "__main__":
    with flag_errors():  # the library's field names as this recipe's flags
        main()
