"""SelfCon: the loss is SupCon over the final and the exit's embeddings of both views, the exit reading the stage's
output as the backbone's own hidden states give it; a bad stage name is named; it trains through the trainer.
The 2-process parity is in tests/test_cluster_distributed.py."""

from __future__ import annotations

import pytest
import torch

from hfcontrast import ContrastiveVisionModel
from hfcontrast.losses import supcon_loss
from hfcontrast.objectives import SelfCon
from tests.tiny import vision_config


@pytest.mark.parametrize("supervised", [False, True])
def test_selfcon_is_supcon_over_both_exits_of_both_views(supervised: bool) -> None:
    torch.manual_seed(0)
    model = ContrastiveVisionModel(vision_config()).double()
    objective = SelfCon("backbone.encoder.stages.0", 0.2, supervised=supervised, encoder=model).double()
    g = torch.Generator().manual_seed(1)
    query, key = torch.randn(6, 3, 16, 16, generator=g, dtype=torch.float64), torch.randn(6, 3, 16, 16, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    embedded = model(pixel_values=torch.cat([query, key]), use_head=True).embeddings  # the trainer's one forward
    got = objective({"query": embedded[:6], "key": embedded[6:]}, {"labels": labels}).loss

    hidden = model.backbone(pixel_values=torch.cat([query, key]), output_hidden_states=True).hidden_states[1]
    exits = objective.exit_head(hidden.mean(dim=(2, 3)))  # stage 0's output, averaged over space
    features = torch.stack([embedded[:6], embedded[6:], exits[:6], exits[6:]], dim=1)
    expected = supcon_loss(features, labels if supervised else None, temperature=0.2).loss
    torch.testing.assert_close(got, expected)
    assert objective.exit_head[0].weight.shape[1] == 8  # the stage's width, found by the probe
    stage = list(model.backbone.encoder.stages[0].parameters())  # the exit trains it: its gradient is the reference's
    for a, b in zip(torch.autograd.grad(got, stage, retain_graph=True), torch.autograd.grad(expected, stage), strict=True):
        torch.testing.assert_close(a, b)


def test_selfcon_names_a_missing_stage_and_a_missing_forward() -> None:
    model = ContrastiveVisionModel(vision_config())
    with pytest.raises(ValueError, match=r"no module 'backbone.encoder.stage.9'.*stages include"):
        SelfCon("backbone.encoder.stage.9", encoder=model)
    objective = SelfCon("backbone.encoder.stages.0", encoder=model)
    with pytest.raises(RuntimeError, match="read 0 rows"):
        model(pixel_values=torch.zeros(2, 3, 16, 16))
        objective._captured = []
        objective({"query": torch.randn(2, 8), "key": torch.randn(2, 8)}, {})


def test_selfcon_trains_the_lower_layers_from_both_exits(tmp_path: object) -> None:
    from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
    from tests.test_trainer_image import ColoredNoise, collate

    torch.manual_seed(0)
    model = ContrastiveVisionModel(vision_config())
    args = ContrastiveTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=8, save_strategy="no",
                                        per_device_train_batch_size=16, logging_steps=1, disable_tqdm=True,
                                        bad_rows="unchecked", learning_rate=3e-3)  # fmt: skip
    objective = SelfCon("backbone.encoder.stages.0", 0.2, encoder=model)
    before = [p.detach().clone() for p in objective.exit_head.parameters()]
    trainer = ContrastiveTrainer(model, args, objective=objective, train_dataset=ColoredNoise(), data_collator=collate)
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert all(not torch.equal(a, p) for a, p in zip(before, objective.exit_head.parameters(), strict=True))  # it learns
