"""Pushing with HfApi mocked at create_repo / create_commit (HF_HUB_OFFLINE=1): exact file sets and card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub.constants
import pytest
import torch
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.hf_api import CommitInfo, RepoUrl

from hfcontrast.collators import UnsupervisedSimCSECollator
from hfcontrast.hub import checkpoint_files, export_model, push_to_hub, render_model_card, write_model_card
from hfcontrast.objectives import SimCSE
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from tests.tiny import text_model, tokenizer

TEXT_CHECKPOINT = [
    "README.md", "config.json", "config_sentence_transformers.json", "configuration_common.py", "configuration_text.py",
    "heads.py", "model.safetensors", "modeling_text.py", "modules.json", "outputs.py", "pooling.py",
    "sentence_bert_config.json", "tokenizer.json", "tokenizer_config.json", "towers.py",
]
RUN_ARTEFACTS = ["eval_results.json", "training.png"]
EVAL_RESULTS = {"before_sts_spearman": 0.2, "eval_sts_spearman": 0.6180339887, "eval_sts_pearson": 0.5, "train_steps": 2}


class FakeHub:
    """Records ``create_repo`` / ``create_commit`` calls instead of reaching the Hub."""

    def __init__(self) -> None:
        self.repos: list[str] = []
        self.private: list[bool | None] = []
        self.commits: list[dict[str, Any]] = []

    def create_repo(self, api: HfApi, repo_id: str, **kwargs: Any) -> RepoUrl:
        assert kwargs.get("exist_ok") is True
        self.repos.append(repo_id)
        self.private.append(kwargs.get("private"))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, api: HfApi, repo_id: str, operations: list, **kwargs: Any) -> CommitInfo:
        assert all(isinstance(op, CommitOperationAdd) for op in operations)
        contents = {}
        for op in operations:
            source = op.path_or_fileobj
            contents[op.path_in_repo] = source if isinstance(source, bytes) else Path(source).read_bytes()
        self.commits.append({"repo_id": repo_id, "files": [op.path_in_repo for op in operations],
                             "contents": contents, **kwargs})
        url = f"https://huggingface.co/{repo_id}/commit/{'0' * 40}"
        return CommitInfo(commit_url=url, commit_message=kwargs.get("commit_message", ""), commit_description="",
                          oid="0" * 40)

    def card(self, tmp_path: Path, commit: int = -1) -> ModelCard:
        path = tmp_path / f"pushed-README-{commit}.md"
        path.write_bytes(self.commits[commit]["contents"]["README.md"])
        return ModelCard.load(path)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    fake = FakeHub()
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: fake.create_repo(self, repo_id, **kw))
    monkeypatch.setattr(
        HfApi, "create_commit", lambda self, repo_id, operations, **kw: fake.create_commit(self, repo_id, operations, **kw)
    )
    return fake


def index_of(card: ModelCard) -> dict[str, float]:
    return {result.metric_config: result.metric_value for result in card.data.eval_results or []}


def make_trainer(tmp_path: Path, **overrides: object) -> ContrastiveTrainer:
    values: dict = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=1, report_to=[],
        save_strategy="no", use_cpu=True, disable_tqdm=True, hub_model_id="someone/tiny-simcse",
        export_format="hfcontrast",  # these tests pin the custom format's file set; the standard ones are below
    )
    values.update(overrides)
    torch.manual_seed(0)
    model = text_model(pooler="cls", mlp_only_train=True)
    trainer = ContrastiveTrainer(
        model=model, args=ContrastiveTrainingArguments(**values), objective=SimCSE(0.05, encoder=model),
        train_dataset=datasets.Dataset.from_dict({"text": ["a red cat", "the old car", "blue sky", "a dog runs"]}),
        data_collator=UnsupervisedSimCSECollator(tokenizer(), "text", max_length=8), processing_class=tokenizer(),
    )
    trainer.train()
    return trainer


def write_artefacts(trainer: ContrastiveTrainer) -> None:
    """What a recipe writes on the main process: eval_results.json, training.png, the card."""
    out = Path(trainer.args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_results.json").write_text(json.dumps(EVAL_RESULTS))
    (out / "training.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write_model_card(trainer.summary(method="SimCSE (unsupervised)", hyperparameters={"temperature": 0.05},
                                     eval_results=EVAL_RESULTS, train_dataset_name="wiki.txt", base_model="all-MiniLM-L6-v2"))


def test_push_text_model_uploads_exact_files_and_parsable_card(hub: FakeHub, tmp_path: Path) -> None:
    model = text_model()
    card = render_model_card(family="text", method="SimCSE", hyperparameters={}, eval_results=EVAL_RESULTS,
                             train_dataset_name=None, base_model=None, model_name="tiny", repo_id="someone/tiny")
    push_to_hub(model, "someone/tiny", processing_class=tokenizer(), card=card, private=True, export_format="hfcontrast")
    assert hub.repos == ["someone/tiny"] and len(hub.commits) == 1
    assert hub.commits[0]["files"] == TEXT_CHECKPOINT
    assert index_of(hub.card(tmp_path)) == {"eval_sts_spearman": 0.6180339887, "eval_sts_pearson": 0.5}
    assert json.loads(hub.commits[0]["contents"]["modules.json"])[0]["path"] == ""


def test_trainer_push_sends_the_recipe_artefacts_and_keeps_our_card(hub: FakeHub, tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    trainer.save_model()
    write_artefacts(trainer)
    ours = (Path(trainer.args.output_dir) / "README.md").read_text()
    assert (Path(trainer.args.output_dir) / "training_args.bin").is_file()  # written by Trainer, never pushed
    trainer.push_to_hub(commit_message="end")
    assert hub.repos == ["someone/tiny-simcse"] and hub.commits[-1]["commit_message"] == "end"
    assert hub.commits[-1]["files"] == sorted(TEXT_CHECKPOINT + RUN_ARTEFACTS)
    assert hub.commits[-1]["contents"]["README.md"].decode() == ours
    assert index_of(hub.card(tmp_path)) == {"eval_sts_spearman": 0.6180339887, "eval_sts_pearson": 0.5}
    # hfcontrast.hub.push_to_hub on the same folder sends the same files.
    push_to_hub(None, "someone/tiny-simcse", folder=trainer.args.output_dir)
    assert hub.commits[-1]["files"] == hub.commits[-2]["files"]


def test_push_to_hub_argument_pushes_once_from_save_model_after_the_artefacts(hub: FakeHub, tmp_path: Path) -> None:
    """The recipe order: artefacts first, then ``trainer.save_model()``, which pushes (TrainingArguments)."""
    trainer = make_trainer(tmp_path, push_to_hub=True)
    assert hub.repos == ["someone/tiny-simcse"]  # Trainer.__init__ created the repo
    write_artefacts(trainer)
    trainer.save_model()
    assert len(hub.commits) == 1 and hub.commits[0]["files"] == sorted(TEXT_CHECKPOINT + RUN_ARTEFACTS)
    assert hub.card(tmp_path).data.base_model == "sentence-transformers/all-MiniLM-L6-v2"


def test_trainer_push_without_a_card_writes_hfcontrast_card(hub: FakeHub, tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    trainer.push_to_hub()
    card = hub.card(tmp_path)
    assert card.data.library_name == "hfcontrast" and "simcse" in card.data.tags
    assert hub.commits[-1]["files"] == TEXT_CHECKPOINT


def test_trainer_push_creates_a_private_repo_when_asked(hub: FakeHub, tmp_path: Path) -> None:
    """``private=`` reaches ``create_repo`` on every supported transformers; the arguments are left as they were."""
    trainer = make_trainer(tmp_path)
    before = trainer.args.hub_private_repo
    trainer.push_to_hub(private=True)
    assert hub.repos == ["someone/tiny-simcse"] and hub.private == [True]
    assert trainer.args.hub_private_repo == before and before is not True


def test_model_push_to_hub_sends_weights_config_and_code(hub: FakeHub) -> None:
    """``PreTrainedModel.push_to_hub`` (transformers' own) uploads the remote-code files too."""
    text_model().push_to_hub("someone/plain")
    files = hub.commits[-1]["files"]
    assert {"config.json", "model.safetensors", "configuration_text.py", "modeling_text.py", "pooling.py",
            "configuration_common.py"} <= set(files)
    assert not any(name.endswith(".bin") for name in files)


def test_exports_are_safetensors_only(tmp_path: Path) -> None:
    files = export_model(text_model(), str(tmp_path / "m"), tokenizer())
    assert "model.safetensors" in files and not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    (tmp_path / "m" / "training_args.bin").write_bytes(b"pickle")
    (tmp_path / "m" / "checkpoint-5").mkdir()
    (tmp_path / "m" / "checkpoint-5" / "model.safetensors").write_bytes(b"x")
    assert checkpoint_files(str(tmp_path / "m")) == sorted(set(TEXT_CHECKPOINT) - {"README.md"})
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        checkpoint_files(str(pickled))


STANDARD_FILES = {
    "text": ["1_Pooling/config.json", "README.md", "config.json", "config_sentence_transformers.json", "eval_results.json",
             "hfcontrast.json", "hfcontrast_head.safetensors", "model.safetensors", "modules.json",
             "sentence_bert_config.json", "tokenizer.json", "tokenizer_config.json", "training.png"],
    "vision": ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"],
    "dual": ["README.md", "config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "tokenizer_config.json"],
}  # fmt: skip


def test_trainer_pushes_exactly_the_standard_folder(hub: FakeHub, tmp_path: Path) -> None:
    """The default format: the sentence-transformers folder (and the run's artefacts), no code file, no pickle."""
    trainer = make_trainer(tmp_path, export_format="standard")
    trainer.save_model()
    write_artefacts(trainer)
    trainer.push_to_hub(commit_message="end")
    assert hub.commits[-1]["files"] == STANDARD_FILES["text"]
    assert hub.card(tmp_path).data.library_name == "sentence-transformers"


@pytest.mark.parametrize("family", ["vision", "dual"])
def test_push_to_hub_sends_exactly_the_standard_folder(family: str, hub: FakeHub, tmp_path: Path) -> None:
    from transformers import ConvNextImageProcessorPil, VisionTextDualEncoderProcessor, ViTImageProcessorPil

    from hfcontrast import ContrastiveVisionModel
    from tests.test_export_formats import dual
    from tests.tiny import fresh_tokenizer, vision_config

    if family == "vision":
        model, processor = ContrastiveVisionModel(vision_config()), ConvNextImageProcessorPil(size={"shortest_edge": 32})
    else:
        images = ViTImageProcessorPil(size={"height": 16, "width": 16})
        model, processor = dual(), VisionTextDualEncoderProcessor(image_processor=images, tokenizer=fresh_tokenizer())
    push_to_hub(model, "someone/m", processing_class=processor)
    assert hub.commits[-1]["files"] == STANDARD_FILES[family]
    assert hub.card(tmp_path).data.library_name == "transformers"
