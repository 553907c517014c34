"""What a new user hits first: imports, old checkpoints, exported files, the card, precision flags, and
an installed wheel that finds its data from anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import torch

import hfcontrast
from hfcontrast import ContrastiveTextConfig, ContrastiveTextModel
from hfcontrast.hub import export_model
from hfcontrast.trainer import ContrastiveTrainingArguments
from tests.launch import REPO_ROOT
from tests.test_hub_card import make_trainer
from tests.tiny import bert_config, text_model, tokenizer


def test_subpackages_are_attributes_without_a_prior_import() -> None:
    code = "import hfcontrast; print(hfcontrast.evaluation.STSEvaluator.__name__, hfcontrast.trainer.ContrastiveTrainer.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["STSEvaluator", "ContrastiveTrainer"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hfcontrast.nope  # noqa: B018


def test_version_1_text_config_keeps_its_mlp_head(tmp_path: Path) -> None:
    """Config version 1 implied SimCSE's MLP head with pooler="cls"; such checkpoints load with the head."""
    model = text_model(pooler="cls").eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("mlp_head")
    config["hfcontrast_config_version"] = 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = ContrastiveTextModel.from_pretrained(tmp_path).eval()
    assert loaded.config.mlp_head and loaded.config.hfcontrast_config_version == 2
    inputs = tokenizer()(["a red cat"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).embeddings, model(**inputs).embeddings)
    assert not ContrastiveTextConfig(backbone_config=bert_config(), pooler="cls").mlp_head  # version 2: its own flag
    with pytest.raises(ValueError, match="mlp_only_train needs mlp_head"):
        ContrastiveTextConfig(backbone_config=bert_config(), mlp_only_train=True)


def test_export_records_no_local_path_and_names_the_tokenizer(tmp_path: Path) -> None:
    export_model(text_model(), str(tmp_path), tokenizer())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["backbone_config"].get("_name_or_path", "") == ""
    assert str(Path.home()) not in (tmp_path / "config.json").read_text() and ".venv" not in (tmp_path / "config.json").read_text()
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "BertTokenizer"


def test_card_without_a_hub_id_uses_a_clear_placeholder_and_the_precision_used(tmp_path: Path) -> None:
    from hfcontrast.hub import write_model_card

    trainer = make_trainer(tmp_path)
    path = write_model_card(trainer.summary(method="SimCSE", hyperparameters={}, eval_results={}))
    text = Path(path).read_text()
    assert 'AutoModel.from_pretrained("your-username/out")' in text and 'from_pretrained("out")' not in text
    assert "CPU" in text and ", fp32 |" in text


def test_fp16_on_the_cpu_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fp16 cannot take effect on the CPU") as refused:
        ContrastiveTrainingArguments(output_dir=str(tmp_path), use_cpu=True, fp16=True)
    assert "--" not in str(refused.value)  # the library names its fields; the recipes translate them


def test_recipes_read_the_library_fields_as_their_flags(tmp_path: Path) -> None:
    """``flag_errors`` (which every recipe's ``main`` runs under) keeps the error's type and names flags."""
    from hfcontrast.cli.flags import flag_errors
    from hfcontrast.trainer.checkpoints import resolve_resume

    with pytest.raises(ValueError, match=r"^--fp16 cannot .* or with --bf16=True \(CPU autocast\)$"), flag_errors():
        ContrastiveTrainingArguments(output_dir=str(tmp_path), use_cpu=True, fp16=True)
    with pytest.raises(FileNotFoundError, match=r"^--resume_from_checkpoint latest: no complete checkpoint in "), flag_errors():
        resolve_resume("latest", str(tmp_path / "x"), needs_objective_state=False)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint in") as kept, flag_errors():
        resolve_resume("latest", str(tmp_path / "output_dir"), needs_objective_state=False)
    assert "/--output_dir" not in str(kept.value)  # a field name inside a path stays as it is


def test_an_installed_wheel_finds_its_data_from_any_directory(tmp_path: Path) -> None:
    """Build the wheel, install it (no dependencies) into a new venv that sees this venv's packages, and
    read the packaged data from an unrelated working directory."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO_ROOT)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("hfcontrast-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    # The test venv's packages (torch, transformers, ...) on the path, after the new venv's own.
    Path(purelib, "test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import hfcontrast, sys; from hfcontrast.demo import WIKI_SENTENCES, STSB_DEV, NOTICE, data_file, load_text_dataset;"
        "assert sys.prefix != sys.base_prefix; print(hfcontrast.__file__);"
        "print(len(load_text_dataset(data_file(WIKI_SENTENCES))), data_file(STSB_DEV), data_file(NOTICE))"
    )
    out = subprocess.run([str(python), "-c", code], cwd=elsewhere, capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith(purelib) and not out[0].startswith(str(REPO_ROOT))
    assert out[1] == "11913" and out[2].startswith(purelib) and Path(out[3]).is_file()
