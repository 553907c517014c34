"""Export and publishing for :class:`~hfcontrast.trainer.ContrastiveTrainer`: ``save_model`` writes the
standard folders of :func:`hfcontrast.hub.export`, ``push_to_hub`` sends hfcontrast's card and file set."""

from __future__ import annotations

import logging
import os
from typing import Any

from transformers import Trainer

from ..hub.model_card import CARD_NAME, is_hfcontrast_card, write_model_card
from ..hub.push import upload_folder_to_hub
from ..hub.sentence_transformers import write_sentence_transformers_files
from .arguments import ContrastiveTrainingArguments
from .guards import check_finite_model
from .summary import RunSummary, run_summary

logger = logging.getLogger(__name__)


class PublishingTrainer(Trainer):
    """The export and Hub half of ``ContrastiveTrainer`` (its base class): checkpoints in the hfcontrast format,
    which resumes exactly; final exports in ``args.export_format``; hfcontrast's model card, never Trainer's."""

    args: ContrastiveTrainingArguments
    rejected_rows: int  # the bad rows the run dropped (the card reports them)

    def summary(self, **fields: Any) -> RunSummary:
        """What the model card says of this run (:class:`~hfcontrast.trainer.summary.RunSummary`)."""
        return run_summary(self, **fields)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """:meth:`export` (a checkpoint's copy when ``_internal_call``), then the push of ``push_to_hub`` runs."""
        self.export(output_dir, checkpoint=_internal_call)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save")

    def export(self, output_dir: str | None = None, *, checkpoint: bool = False) -> None:
        """The model in ``args.export_format`` (:func:`hfcontrast.hub.export`: a standard sentence-transformers,
        transformers or dual-encoder folder by default), with ``onnx/`` when ``args.export_onnx``. Checkpoints and
        sharded runs, whose weights Trainer gathers, keep the hfcontrast format, which resumes exactly. A model with
        non-finite weights is never written."""
        from ..hub.formats import export
        from ..hub.onnx import export_onnx

        model = self.accelerator.unwrap_model(self.model)
        check_finite_model(model)
        output_dir = str(output_dir or self.args.output_dir)
        sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
        if checkpoint or self.args.export_format == "hfcontrast" or sharded:
            if sharded and not checkpoint and self.args.export_format != "hfcontrast":
                logger.warning("sharded training saves the hfcontrast format; convert it with hfcontrast.hub.export")
            super().save_model(output_dir, _internal_call=True)  # internal: Trainer pushes nothing here
            if self.args.should_save:
                write_sentence_transformers_files(model, output_dir)
        elif self.args.should_save:
            length = getattr(self.data_collator, "max_length", None)
            export(model, output_dir, self.processing_class, export_format="standard", max_seq_length=length)
        if self.args.should_save and not checkpoint and (self.args.export_onnx or self.args.quantize):
            export_onnx(model, output_dir, self.processing_class, quantize=self.args.quantize)

    def create_model_card(self, **kwargs: Any) -> None:  # type: ignore[override]
        """Keep the hfcontrast card already in ``output_dir`` (``hfcontrast.hub.write_model_card``),
        else write one from :meth:`summary`; never Trainer's generic draft, which has no model-index,
        loading snippets or citation. Takes ``Trainer.create_model_card``'s keywords."""
        card = os.path.join(str(self.args.output_dir), CARD_NAME)
        if self.is_world_process_zero() and not is_hfcontrast_card(card):
            write_model_card(self.summary(**kwargs))

    def push_to_hub(  # type: ignore[override]
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Like ``Trainer.push_to_hub`` (save, card, upload ``output_dir``), with hfcontrast's card and
        file set (``hfcontrast.hub.upload_folder_to_hub``: no ``training_args.bin`` pickle or
        checkpoints), i.e. the files ``hfcontrast.hub.push_to_hub(model, repo, folder=output_dir)`` sends."""
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            chosen = self.args.hub_private_repo  # init_hf_repo(private=) is newer than our transformers floor
            self.args.hub_private_repo = private if private is not None else chosen
            try:
                self.init_hf_repo(token=token)
            finally:
                self.args.hub_private_repo = chosen
        self.export()  # the export in args.export_format, not a checkpoint
        if not self.is_world_process_zero():
            return None
        kwargs.pop("model_name", None)
        self.create_model_card(**kwargs)
        # Waits for the checkpoint uploads of hub_strategy="every_save" still in flight, so this push is
        # not overtaken by an older one.
        self._finish_current_push()
        return upload_folder_to_hub(
            str(self.hub_model_id),
            str(self.args.output_dir),
            commit_message=commit_message or "End of training",
            token=token,
            revision=revision if revision is not None else self.args.hub_revision,
            create_repo=False,
            run_as_future=not blocking,
        )
