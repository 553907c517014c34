"""Export an encoder and push it to the Hub with its card, tokenizer/processor and code files.

The pushed file set (the same for :func:`push_to_hub` and ``ContrastiveTrainer.push_to_hub``) is
the exported folder minus what is not model: Trainer checkpoints (``checkpoint-*``), names starting
with ``_`` or ``.``, and pickles (``training_args.bin``, ``*.bin``, ``*.pt``, ...): checkpoints are
safetensors only. It holds ``model.safetensors``, ``config.json``, the code files ``save_pretrained``
copied for ``trust_remote_code`` (``configuration_*.py``, ``modeling_*.py`` and the modules they import:
``pooling.py``, ``heads.py``, ...), the tokenizer / processor files, ``README.md`` (the card), for text models the
sentence-transformers files, and any run artefacts (``eval_results.json``, ``training.png``).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard

from .model_card import CARD_NAME, MODEL_TYPE_FAMILY, render_model_card
from .sentence_transformers import sentence_transformers_files, write_sentence_transformers_files

logger = logging.getLogger(__name__)

#: Never uploaded: Trainer checkpoints, private/hidden names and pickled files.
PUSH_IGNORE_PATTERNS = ("checkpoint-*", "_*", ".*", "*/.*", "__pycache__/*", "*.pyc")
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def export_model(model: Any, output_dir: str, processing_class: Any = None) -> list[str]:
    """``save_pretrained`` (safetensors + config + code files), the tokenizer / processor and, for
    text models, the sentence-transformers files. Returns the sorted file list of ``output_dir``."""
    model.save_pretrained(output_dir)
    if processing_class is not None:
        processing_class.save_pretrained(output_dir)
    write_sentence_transformers_files(model, output_dir)
    return checkpoint_files(output_dir)


def checkpoint_files(folder: str) -> list[str]:
    """Relative (posix) paths under ``folder`` that a push uploads, sorted. Raises when the folder
    has no safetensors weights (a ``pytorch_model.bin``-only checkpoint is refused)."""
    root = Path(folder)
    files, skipped = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(relative, pattern) for pattern in PUSH_IGNORE_PATTERNS):
            continue
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in PICKLE_PATTERNS):
            skipped.append(relative)
            continue
        files.append(relative)
    if not any(name in files for name in SAFE_WEIGHTS):
        raise FileNotFoundError(
            f"{folder} has no model.safetensors: hfcontrast publishes safetensors checkpoints only "
            f"(save with model.save_pretrained or trainer.save_model); found {files + skipped}"
        )
    if skipped:
        logger.info("not uploading pickled files (safetensors only): %s", skipped)
    return files


def _family(model: Any, folder: str | None) -> str:
    """``text`` / ``vision`` / ``dual``: from the model's type, else from the folder (an hfcontrast config, or a
    standard export: a sentence-transformers folder, a ``VisionTextDualEncoderModel``, an image backbone)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type is None and folder and os.path.isfile(os.path.join(folder, "config.json")):
        model_type = json.loads(Path(folder, "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type in MODEL_TYPE_FAMILY:
        return MODEL_TYPE_FAMILY[model_type]
    if folder and model is None:
        if os.path.isfile(os.path.join(folder, "modules.json")):
            return "text"
        if model_type == "vision-text-dual-encoder":
            return "dual"
        if os.path.isfile(os.path.join(folder, "preprocessor_config.json")):
            return "vision"
    raise ValueError(f"model_type {model_type!r} is not an hfcontrast model or export ({sorted(MODEL_TYPE_FAMILY)})")


def model_type_of(folder: str) -> str | None:
    path = os.path.join(folder, "config.json")
    return json.loads(Path(path).read_text(encoding="utf-8")).get("model_type") if os.path.isfile(path) else None


def upload_folder_to_hub(
    repo_id: str,
    folder: str,
    *,
    card: ModelCard | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    commit_message: str = "Upload hfcontrast model",
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_repo: bool = True,
    run_as_future: bool = False,
) -> Any:
    """One commit with :func:`checkpoint_files` of ``folder`` (+ ``card`` as ``README.md`` and
    ``extra_files``, both replacing files of the same name) through ``HfApi.create_commit``;
    ``create_repo`` first calls ``HfApi.create_repo(exist_ok=True)``. Returns the ``CommitInfo``
    (a ``Future`` of it with ``run_as_future``)."""
    generated = dict(extra_files or {})
    if card is not None:
        generated[CARD_NAME] = str(card).encode("utf-8")
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=os.path.join(folder, name))
        for name in checkpoint_files(folder)
        if name not in generated
    ]
    operations += [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in generated.items()
    ]
    operations.sort(key=lambda operation: operation.path_in_repo)
    api = HfApi(token=token, library_name="hfcontrast")
    if create_repo:
        repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    if run_as_future:
        return api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message,
            token=token,
            revision=revision,
            run_as_future=True,
        )
    return api.create_commit(
        repo_id, operations, commit_message=commit_message, token=token, revision=revision
    )


def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    folder: str | None = None,
    processing_class: Any = None,
    card: ModelCard | str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload hfcontrast model",
    revision: str | None = None,
    export_format: str = "standard",
) -> Any:
    """Push an hfcontrast encoder to ``repo_id`` (created if needed) in one commit.

    ``folder``: an exported directory (``trainer.save_model`` output, with the card from
    :func:`~hfcontrast.hub.write_model_card`); without it ``model`` (and ``processing_class``) are
    exported to a temporary directory in ``export_format`` (:func:`hfcontrast.hub.export`). ``card``: a
    ``ModelCard`` or the path of a README to use instead of the folder's; with neither, a minimal card is
    rendered (no evaluation results). A custom-format text model's sentence-transformers files are added when
    missing.
    """
    from .formats import export

    with tempfile.TemporaryDirectory() as tmp:
        if folder is None:
            if model is None:
                raise ValueError("pass model or folder")
            folder = tmp
            export(model, folder, processing_class, export_format=export_format)
        elif processing_class is not None:
            logger.warning("processing_class is ignored with folder=: save it into the folder instead")
        family = _family(model, folder)
        model_card = ModelCard.load(card) if isinstance(card, str | os.PathLike) else card
        if model_card is None and not os.path.isfile(os.path.join(folder, CARD_NAME)):
            logger.warning(
                "no model card in %s: pushing a minimal one (see hfcontrast.hub.write_model_card)", folder
            )
            model_card = render_model_card(
                family=family,
                method="contrastive learning",
                hyperparameters={},
                eval_results={},
                train_dataset_name=None,
                base_model=None,
                model_name=repo_id.split("/")[-1],
                repo_id=repo_id,
                export_format="hfcontrast" if model_type_of(folder) in MODEL_TYPE_FAMILY else "standard",
            )
        extra = {}
        if family == "text" and not os.path.isfile(os.path.join(folder, "modules.json")):
            with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
                prompts = json.load(handle).get("prompts")
            files = sentence_transformers_files(prompts=prompts).items()
            extra = {name: (json.dumps(content, indent=2) + "\n").encode() for name, content in files}
        return upload_folder_to_hub(
            repo_id,
            folder,
            card=model_card,
            extra_files=extra,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
        )
