"""PCL / ProtoNCE against its formula written out: MoCo v2's InfoNCE plus, per clustering, -log of the
row's own centroid's softmax over centroids scaled by their concentration; clusters from the momentum
encoder's features of every row, refreshed by the callback at the due steps and kept by a resumed run."""

from __future__ import annotations

import math

import datasets
import pytest
import torch
import torch.nn.functional as F

from hfcontrast import ContrastiveVisionModel
from hfcontrast.losses import concentration, kmeans
from hfcontrast.objectives import PCL, MoCo
from hfcontrast.objectives.clusters import ClusterRefreshCallback, interleaved
from tests.tiny import vision_config


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def objective(**kwargs: object) -> tuple[ContrastiveVisionModel, PCL]:
    torch.manual_seed(0)
    model = ContrastiveVisionModel(vision_config())
    return model, PCL(model, num_rows=12, num_clusters=(2, 3), queue_size=16, **kwargs)  # type: ignore[arg-type]


def batch(ids: list[int]) -> dict:
    return {
        "query": {"pixel_values": randn(len(ids), 3, 16, 16, seed=1)},
        "key": {"pixel_values": randn(len(ids), 3, 16, 16, seed=2)},
        "ids": torch.tensor(ids),
    }


def naive_proto(query: torch.Tensor, pcl: PCL, ids: list[int]) -> float:
    q = F.normalize(query.double(), dim=-1)
    total = 0.0
    for m in range(len(pcl.num_clusters)):
        c, phi = pcl.centroids()[m].double(), pcl.concentrations()[m].double()
        for row, i in enumerate(ids):
            logits = [float(q[row] @ F.normalize(c[j], dim=0)) / float(phi[j]) for j in range(c.shape[0])]
            own = int(pcl.assignments[m, i])
            total -= (logits[own] - math.log(sum(math.exp(x) for x in logits))) / len(ids)
    return total / len(pcl.num_clusters)


def test_proto_nce_is_infonce_plus_the_prototype_term_written_out() -> None:
    model, pcl = objective()
    ids = [0, 5, 7, 11]
    data = batch(ids)
    query = model(**data["query"], use_head=True).embeddings
    before = pcl({"query": query}, data)
    assert float(before.stats["proto_loss"]) == 0.0  # no clusters yet: plain MoCo v2
    moco = MoCo(model, version="v2", queue_size=16, momentum=0.999)
    moco.load_state_dict(pcl.state_dict(), strict=False)
    assert float(before.loss.detach()) == pytest.approx(float(moco({"query": query}, data).loss.detach()), rel=1e-6)
    pcl.set_clusters(randn(12, 8, seed=4), step=0)
    after = pcl({"query": query}, data)
    assert float(after.stats["proto_loss"]) == pytest.approx(naive_proto(query.detach(), pcl, ids), rel=1e-5)
    assert float(after.loss.detach()) == pytest.approx(float(before.loss.detach()) + naive_proto(query.detach(), pcl, ids), rel=1e-5)


def test_clusters_are_kmeans_of_the_features_with_their_concentration() -> None:
    _, pcl = objective(seed=3)
    features = randn(12, 8, seed=5)
    pcl.set_clusters(features, step=4)
    for m, k in enumerate((2, 3)):
        centroids, assigned = kmeans(features, k, iterations=20, seed=3 + 4)
        torch.testing.assert_close(pcl.assignments[m], assigned)
        torch.testing.assert_close(pcl.centroids()[m], centroids)
        torch.testing.assert_close(pcl.concentrations()[m], concentration(features, centroids, assigned))
    assert int(pcl.clustered_at) == 4
    with pytest.raises(ValueError, match="batch\\['ids'\\]"):
        pcl({"query": randn(2, 8)}, {"key": batch([0, 1])["key"]})


def test_row_indices_out_of_range_are_refused_before_training() -> None:
    """The id column's range is checked once, on the host, when the trainer asks for the refresh."""
    _, pcl = objective()
    collator = type("C", (), {"id_column": "row", "eval_collator": lambda self: collate})()
    rows = datasets.Dataset.from_dict({"row": [0, 5, 12]})  # PCL was bound to 12 rows
    with pytest.raises(ValueError, match=r"column 'row' must hold row indices in \[0, 12\), got \[0, 12\]"):
        pcl.training_callbacks(rows, collator)


def test_interleaved_restores_row_order() -> None:
    rows = torch.arange(7).unsqueeze(1)
    gathered = torch.cat([rows[0::3], rows[1::3], rows[2::3]])
    torch.testing.assert_close(interleaved(gathered, 7, 3), rows)


class Rows(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": randn(3, 16, 16, seed=100 + i)}


def collate(rows: list[dict]) -> dict:
    return {"pixel_values": torch.stack([r["pixel_values"] for r in rows])}


def test_callback_refreshes_at_due_steps_from_momentum_features_and_skips_kept_clusters() -> None:
    _, pcl = objective()
    callback = ClusterRefreshCallback(pcl, Rows(), collate, every_n_steps=3, start_step=2, batch_size=5)
    assert [callback.due_step(s) for s in (0, 1, 2, 4, 5, 9)] == [None, None, 2, 2, 5, 8]
    args, state = type("A", (), {"disable_tqdm": True, "dataloader_num_workers": 0})(), type("S", (), {"global_step": 2})()
    callback.on_step_begin(args, state, None)  # type: ignore[arg-type]
    pcl.key_encoder.eval()
    want = torch.cat([pcl.key_encoder(collate([Rows()[i]])) for i in range(12)])
    _, assigned = kmeans(want, 3, iterations=20, seed=2)
    torch.testing.assert_close(pcl.assignments[1], assigned)
    kept = pcl.assignments.clone()
    pcl.centroids()[0].add_(1.0)  # a resumed run keeps its checkpoint's clusters until the next due step
    state.global_step = 4
    callback.on_step_begin(args, state, None)  # type: ignore[arg-type]
    torch.testing.assert_close(pcl.assignments, kept)
    assert int(pcl.clustered_at) == 2
