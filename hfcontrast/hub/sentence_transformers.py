"""Sentence-transformers files next to an exported text model, so ``SentenceTransformer(path)`` loads it.

The pipeline is a single ``Transformer`` module whose output is our model's ``embeddings`` field
(sentence-transformers >= 6 maps a model output to ``sentence_embedding`` through
``modality_config``), so pooling, the MLP head and normalisation are the model's own: the
embeddings are identical to ``AutoModel.from_pretrained(path)(...).embeddings``.
"""

from __future__ import annotations

import json
import os
from typing import Any

TEXT_MODEL_TYPE = "hfcontrast-text"
#: The sentence-transformers prompt name of each trained view's prompt (``encode_query`` /
#: ``encode_document`` read ``query`` / ``document``); other views keep their own name.
PROMPT_NAMES = {"anchor": "query", "positive": "document", "negative": "document"}


def sentence_transformers_prompts(view_prompts: dict[str, str] | None) -> dict[str, str]:
    """``{"anchor": "query: ", "positive": "passage: "}`` -> ``{"query": "query: ", "document": "passage: "}``;
    without prompts, the empty ``query`` / ``document`` prompts."""
    prompts = {"query": "", "document": ""}
    for view, prompt in (view_prompts or {}).items():
        name = PROMPT_NAMES.get(view, view)
        if view == "negative" and "positive" in (view_prompts or {}):
            continue  # negatives are documents: the positive's prompt names "document"
        prompts[name] = prompt
    return prompts


def sentence_transformers_files(
    similarity_fn_name: str = "cosine", prompts: dict[str, str] | None = None
) -> dict[str, Any]:
    """The three JSON files sentence-transformers reads, as ``{filename: content}``; ``prompts`` are the
    trained views' prompts (see :func:`sentence_transformers_prompts`)."""
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}
        ],
        "sentence_bert_config.json": {
            "transformer_task": "feature-extraction",
            "modality_config": {"text": {"method": "forward", "method_output_name": "embeddings"}},
            "module_output_name": "sentence_embedding",
        },
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer",
            "prompts": sentence_transformers_prompts(prompts),
            "default_prompt_name": None,
            "similarity_fn_name": similarity_fn_name,
        },
    }


def write_sentence_transformers_files(model: Any, output_dir: str) -> list[str]:
    """Write the files for text models (``model.config.model_type == 'hfcontrast-text'``); else nothing."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != TEXT_MODEL_TYPE:
        return []
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for name, content in sentence_transformers_files(prompts=getattr(config, "prompts", None)).items():
        path = os.path.join(output_dir, name)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
            handle.write("\n")
        written.append(path)
    return written
