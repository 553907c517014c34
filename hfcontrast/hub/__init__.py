"""Publishing: sentence-transformers export, model cards, push to the Hub."""

from .sentence_transformers import sentence_transformers_files, write_sentence_transformers_files

__all__ = ["sentence_transformers_files", "write_sentence_transformers_files"]
