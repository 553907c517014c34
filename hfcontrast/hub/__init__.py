"""Publishing: sentence-transformers export, model cards, push to the Hub, run artefacts."""

from .formats import EXPORT_FORMATS, ExportRefused, export
from .model_card import (
    CITATIONS,
    LIBRARY_NAME,
    PIPELINE_TAGS,
    RunSummary,
    hub_id_or_none,
    is_hfcontrast_card,
    model_index_results,
    render_model_card,
    write_model_card,
)
from .onnx import export_onnx
from .push import (
    PUSH_IGNORE_PATTERNS,
    checkpoint_files,
    export_model,
    push_to_hub,
    upload_folder_to_hub,
)
from .report import plot_training, save_eval_results
from .sentence_transformers import sentence_transformers_files, write_sentence_transformers_files

__all__ = [
    "CITATIONS",
    "EXPORT_FORMATS",
    "LIBRARY_NAME",
    "PIPELINE_TAGS",
    "PUSH_IGNORE_PATTERNS",
    "ExportRefused",
    "RunSummary",
    "checkpoint_files",
    "export",
    "export_model",
    "export_onnx",
    "hub_id_or_none",
    "is_hfcontrast_card",
    "model_index_results",
    "plot_training",
    "push_to_hub",
    "render_model_card",
    "save_eval_results",
    "sentence_transformers_files",
    "upload_folder_to_hub",
    "write_model_card",
    "write_sentence_transformers_files",
]
