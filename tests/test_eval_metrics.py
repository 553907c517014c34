"""The packaged sts_correlation evaluate metric loads offline and matches scipy."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from scipy.stats import pearsonr, spearmanr

from hfcontrast.evaluation import available_metrics, load_metric, metric_path


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted during an offline metric load")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_metric_path_points_at_packaged_script() -> None:
    path = Path(metric_path("sts_correlation"))
    assert (path / "sts_correlation.py").is_file()
    assert "sts_correlation" in available_metrics()
    with pytest.raises(FileNotFoundError, match="sts_correlation"):
        metric_path("no_such_metric")


def test_sts_correlation_loads_offline_and_matches_scipy(offline: None) -> None:
    import evaluate

    predictions = [0.1, 0.4, 0.35, 0.8, 0.9]
    references = [0.0, 2.0, 1.0, 4.0, 3.5]
    # ranks: predictions [1, 3, 2, 4, 5], references [1, 3, 2, 5, 4] -> rho = 1 - 6 * 2 / (5 * 24) = 0.9
    for metric in (evaluate.load(metric_path("sts_correlation")), load_metric("sts_correlation")):
        result = metric.compute(predictions=predictions, references=references)
        assert set(result) == {"spearman", "pearson"}
        assert result["spearman"] == pytest.approx(0.9)
        assert result["spearman"] == pytest.approx(spearmanr(predictions, references)[0], abs=1e-12)
        assert result["pearson"] == pytest.approx(pearsonr(predictions, references)[0], abs=1e-12)
        assert -1.0 <= result["pearson"] <= 1.0


def test_sts_correlation_pools_batches(offline: None) -> None:
    metric = load_metric("sts_correlation")
    metric.add_batch(predictions=[0.1, 0.9], references=[1.0, 4.0])
    metric.add_batch(predictions=[0.5, 0.2], references=[2.0, 3.0])
    result = metric.compute()
    preds, refs = [0.1, 0.9, 0.5, 0.2], [1.0, 4.0, 2.0, 3.0]
    assert result["spearman"] == pytest.approx(spearmanr(preds, refs)[0])
    assert result["pearson"] == pytest.approx(pearsonr(preds, refs)[0])
