"""Publishing: sentence-transformers export, run report (plots, eval results), model cards, push to the Hub."""

from .report import plot_training, save_eval_results
from .sentence_transformers import sentence_transformers_files, write_sentence_transformers_files

__all__ = ["plot_training", "save_eval_results", "sentence_transformers_files", "write_sentence_transformers_files"]
