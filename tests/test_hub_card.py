"""Model cards: metadata and model-index parse back with ModelCard.load; body; templates ship in the wheel."""

from __future__ import annotations

import math
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from huggingface_hub import ModelCard

from hfcontrast.hub import CITATIONS, hub_id_or_none, render_model_card, write_model_card
from hfcontrast.hub.model_card import template_dir
from hfcontrast.objectives import (
    BCL,
    BYOL,
    CLIP,
    CPC,
    DINO,
    KCL,
    NNCLR,
    PCL,
    BarlowTwins,
    ContrastiveObjective,
    InBatchKL,
    MoCo,
    SelfCon,
    SigLIP,
    SimCLR,
    SimCSE,
    SimSiam,
    SupervisedHybrid,
    SwAV,
    VICReg,
)
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from tests.tiny import text_model, tokenizer

REPO_ROOT = Path(__file__).resolve().parent.parent
EVAL_RESULTS = {
    "before_sts_spearman": 0.41,
    "eval_sts_spearman": 0.8123456789012345,
    "eval_sts_pearson": 0.79,
    "eval_runtime": 1.5,
    "eval_samples_per_second": 100.0,
    "train_steps": 3,
    "epoch": 1.0,
}
EXPECTED_INDEX = {"eval_sts_spearman": 0.8123456789012345, "eval_sts_pearson": 0.79}



@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may reach the Hub: HF_HUB_OFFLINE=1 (env and huggingface_hub's parsed constant)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

def make_trainer(tmp_path: Path, **overrides: object) -> ContrastiveTrainer:
    values: dict = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, gradient_accumulation_steps=2,
        max_steps=3, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    values.update(overrides)
    model = text_model(pooler="cls", projection_dim=16)
    return ContrastiveTrainer(
        model=model, args=ContrastiveTrainingArguments(**values),
        objective=SimCSE(0.05, queue_size=8, encoder=model), processing_class=tokenizer(),
    )


def index_of(card: ModelCard) -> dict[str, float]:
    """``{eval_results.json key: value}`` of the card's model-index (the key is the metric config)."""
    return {result.metric_config: result.metric_value for result in card.data.eval_results or []}


def test_written_card_parses_with_metadata_index_and_body(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, hub_model_id="someone/tiny-simcse", export_format="hfcontrast")
    out = Path(trainer.args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    path = write_model_card(trainer.summary(
        method="SimCSE (unsupervised)", hyperparameters={"temperature": 0.05, "queue_size": 8, "symmetric": False},
        eval_results=EVAL_RESULTS, train_dataset_name="sentence-transformers/wikipedia-en-sentences",
        base_model="all-MiniLM-L6-v2",
    ))
    assert path == str(out / "README.md")
    card = ModelCard.load(path)
    data = card.data
    assert data.library_name == "hfcontrast"
    assert data.pipeline_tag == "sentence-similarity"
    assert {"contrastive", "simcse", "hfcontrast"} <= set(data.tags)
    assert data.datasets == ["sentence-transformers/wikipedia-en-sentences"]
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.model_name == "tiny-simcse"
    assert index_of(card) == EXPECTED_INDEX  # exact floats; no before_/runtime/train_ keys
    spearman = next(r for r in data.eval_results if r.metric_config == "eval_sts_spearman")
    assert (spearman.task_type, spearman.metric_type, spearman.dataset_split) == (
        "sentence-similarity", "cosine_spearman", "validation",
    )
    body = card.text
    for snippet in (
        'AutoModel.from_pretrained("someone/tiny-simcse")',
        'AutoModel.from_pretrained("someone/tiny-simcse", trust_remote_code=True)',
        'SentenceTransformer("someone/tiny-simcse", trust_remote_code=True)',
        "| Global batch size | 32 (= 16 per device x 1 processes x 2 gradient accumulation steps) |",
        "| Queue size | 8 |",
        "| Temperature | 0.05 |",
        "| `symmetric` | False |",
        "| Spearman correlation (cosine) | sts | validation | 0.8123 | 0.4100 | `eval_sts_spearman` |",
        "![Training loss and evaluation](training.png)",
        "@inproceedings{gao2021simcse",
    ):
        assert snippet in body, snippet


def test_local_paths_stay_out_of_the_metadata(tmp_path: Path) -> None:
    local_model = tmp_path / "my-backbone"
    local_model.mkdir()
    card = render_model_card(
        family="text", method="SimCSE", hyperparameters={}, eval_results={"eval_sts_spearman": 0.5},
        train_dataset_name=str(tmp_path / "wiki_sentences.txt"), base_model=str(local_model), model_name="m",
    )
    parsed = ModelCard(str(card))
    assert parsed.data.base_model is None and parsed.data.datasets is None
    assert "`my-backbone` (local checkpoint)" in parsed.text
    assert "`wiki_sentences.txt` (local file)" in parsed.text
    assert str(tmp_path) not in str(card)


@pytest.mark.parametrize(
    ("family", "tag", "results", "pipeline_tag", "types", "citation"),
    [
        ("vision", "moco-v3", {"eval_knn_top1": 0.5, "eval_knn_linear_probe_top1": 0.625},
         "image-feature-extraction", {("image-classification", "accuracy")}, "chen2021empirical"),
        ("vision", "simclr", {"eval_knn_top1": np.float32(0.25)}, "image-feature-extraction",
         {("image-classification", "accuracy")}, "chen2020simple"),
        ("dual", "siglip", {"eval_zeroshot_top1": 0.3, "eval_zeroshot_top5": 0.9,
                            "eval_retrieval_image_to_text_R@1": 0.2, "eval_retrieval_text_to_image_median_rank": 4.0},
         "zero-shot-image-classification",
         {("zero-shot-image-classification", "accuracy"), ("zero-shot-image-classification", "top_5_accuracy"),
          ("retrieval", "recall_at_1"), ("retrieval", "median_rank")}, "zhai2023sigmoid"),
    ],
)
def test_each_family_renders_its_pipeline_tag_metrics_and_citation(
    family: str, tag: str, results: dict, pipeline_tag: str, types: set, citation: str
) -> None:
    card = ModelCard(str(render_model_card(
        family=family, method=tag.upper(), tag=tag, hyperparameters={"temperature": 0.2}, eval_results=results,
        train_dataset_name="cifar10", base_model="google/vit-base-patch16-224", model_name="m", repo_id="me/m",
        export_format="hfcontrast",
    )))
    assert card.data.pipeline_tag == pipeline_tag and card.data.library_name == "hfcontrast"
    assert {(r.task_type, r.metric_type) for r in card.data.eval_results} == types
    assert index_of(card) == {k: float(v) for k, v in results.items()}
    assert citation in card.text and 'AutoModel.from_pretrained("me/m", trust_remote_code=True)' in card.text


def test_non_results_and_non_finite_values_are_left_out() -> None:
    card = ModelCard(str(render_model_card(
        family="text", method="SimCSE", hyperparameters={}, model_name="m", train_dataset_name=None, base_model=None,
        eval_results={"eval_sts_spearman": math.nan, "eval_custom_score": 3, "eval_flag": True, "eval_note": "x",
                      "test_sts_spearman": 0.7, "before_sts_spearman": 0.1},
    )))
    assert index_of(card) == {"eval_custom_score": 3, "test_sts_spearman": 0.7}
    assert {r.dataset_split for r in card.data.eval_results} == {"validation", "test"}


def test_eval_datasets_and_splits_name_each_evaluators_data() -> None:
    card = ModelCard(str(render_model_card(
        family="vision", method="SimCLR", hyperparameters={}, model_name="m", train_dataset_name="fashion_mnist",
        base_model=None, eval_results={"eval_knn_top1": 0.8, "eval_knn_linear_probe_top1": 0.7, "eval_x_top1": 0.5},
        eval_datasets={"knn": "fashion_mnist"}, eval_splits={"knn": "test"},
    )))
    where = {r.metric_config: (r.dataset_name, r.dataset_split) for r in card.data.eval_results}
    assert where == {"eval_knn_top1": ("fashion_mnist", "test"), "eval_knn_linear_probe_top1": ("fashion_mnist", "test"),
                     "eval_x_top1": ("x", "validation")}


def test_no_results_gives_a_card_without_model_index() -> None:
    card = ModelCard(str(render_model_card(
        family="vision", method="BYOL", tag="byol", hyperparameters={}, eval_results={}, train_dataset_name=None,
        base_model=None, model_name="m",
    )))
    assert card.data.eval_results is None and "No evaluation results" in card.text
    assert "grill2020bootstrap" in card.text


@pytest.mark.parametrize(
    ("objective", "tag"),
    [(SimCSE(), "simcse"), (MoCo(version="v2"), "moco-v2"), (MoCo(), "moco-v2"), (MoCo(version="v3"), "moco-v3"),
     (BYOL(), "byol"), (SimSiam(), "simsiam"), (SimCLR(), "simclr"), (CLIP(), "clip"), (SigLIP(), "siglip"),
     (NNCLR(), "nnclr"), (SwAV(), "swav"), (DINO(), "dino"), (PCL(), "pcl"), (InBatchKL(), "distillation"),
     (BarlowTwins(), "barlow-twins"), (VICReg(), "vicreg"), (SimCLR(direct_dims=8), "directclr"),
     (SupervisedHybrid(3), "supcon-ce"), (KCL(), "kcl"), (BCL(3), "bcl"),
     (SelfCon(), "selfcon"), (CPC(), "cpc")],
)
def test_each_objective_declares_its_tag_and_citation(objective: ContrastiveObjective, tag: str) -> None:
    assert objective.tag == tag
    assert tag in CITATIONS
    card = render_model_card(family="text", method="My New Loss", tag=objective.tag, hyperparameters={},
                             eval_results={}, train_dataset_name=None, base_model=None, model_name="m")
    assert tag in card.data.tags and CITATIONS[tag] in card.text


def test_hub_id_or_none(tmp_path: Path) -> None:
    assert hub_id_or_none("bert-base-uncased") == "bert-base-uncased"
    assert hub_id_or_none("sentence-transformers/all-nli") == "sentence-transformers/all-nli"
    assert hub_id_or_none("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    for local in (str(tmp_path), "./model", "../m", "a/b/c", "train.csv", "/abs/path", "", None):
        assert hub_id_or_none(local) is None, local


def test_packaged_templates_match_model_cards_folder() -> None:
    """``model_cards/`` is canonical; ``hfcontrast/hub/templates/`` is the copy the wheel ships
    (pyproject package-data). Sync with: cp model_cards/* hfcontrast/hub/templates/"""
    canonical = {p.name: p.read_bytes() for p in (REPO_ROOT / "model_cards").iterdir() if p.is_file()}
    packaged = {p.name: p.read_bytes() for p in (REPO_ROOT / "hfcontrast/hub/templates").iterdir() if p.is_file()}
    assert {"text.md", "vision.md", "dual.md", "citations.bib"} <= set(canonical)
    assert packaged == canonical, "run: cp model_cards/* hfcontrast/hub/templates/"
    assert template_dir() == REPO_ROOT / "model_cards"


@pytest.mark.parametrize(
    ("family", "library", "snippets"),
    [
        ("text", "sentence-transformers", ['SentenceTransformer("me/m")', 'AutoModel.from_pretrained("me/m")',
                                           'ContrastiveTextModel.from_pretrained("me/m")']),
        ("vision", "transformers", ['AutoModel.from_pretrained("me/m")', 'pipeline("image-feature-extraction", model="me/m")']),
        ("dual", "transformers", ['pipeline("zero-shot-image-classification", model="me/m")', 'AutoProcessor.from_pretrained("me/m")']),
    ],
)
def test_standard_format_cards_name_the_library_that_loads_them(family: str, library: str, snippets: list[str]) -> None:
    """``library_name`` follows the export format; the usage snippets load the standard folder, without
    ``trust_remote_code`` and without importing hfcontrast (but to train on, for text)."""
    card = ModelCard(str(render_model_card(
        family=family, method="X", tag="simcse", hyperparameters={}, eval_results={}, train_dataset_name=None,
        base_model=None, model_name="m", repo_id="me/m", export_format="standard",
    )))
    assert card.data.library_name == library and "hfcontrast" in card.data.tags
    assert "trust_remote_code=True" not in card.text and "import hfcontrast" not in card.text
    for snippet in snippets:
        assert snippet in card.text, snippet
