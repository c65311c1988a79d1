"""Smoke test of demos/unsupervised.py: a tiny run writes every picture and metrics.json, ends with one JSON
line, and its numbers mean what they say (the inertia is the centres' mean squared distance, EM climbs)."""

import json

import numpy as np
import pytest

from conftest import load_demo

PICTURES = ("kmeans_centres.png", "kmeans_members.png", "pca_scatter.png", "pca_components.png",
            "pca_reconstruction.png", "density_1d.png")


@pytest.fixture(scope="module")
def demo():
    return load_demo("unsupervised")


def test_demo_writes_its_pictures_and_metrics(demo, tmp_path, capsys):
    out = tmp_path / "run"
    report = demo.main(["--limit", "300", "--n-init", "2", "--density-samples", "300", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "demos/made.py --dataset ring8" in printed  # the pointer to the 2-D density pictures
    for name in PICTURES + ("metrics.json",):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "checkpoint.npz").exists()
    written = json.loads((out / "metrics.json").read_text())
    assert written == report and written["name"] == "unsupervised"
    final = written["final"]
    assert final["kmeans_inertia_per_image"] == min(final["kmeans_runs_inertia_per_image"])
    assert 20 < final["kmeans_inertia_per_image"] < 60  # sklearn's on all 4,000 digits: 38.67
    assert 0.2 < final["nmi"] <= 1 and 0.2 < final["purity"] <= 1 and 0 < final["test_nmi"] <= 1
    assert final["pca_components"] == [1, 2, 5, 10, 20, 50, 100, 200]
    assert np.all(np.diff(final["pca_test_mse"]) < 0)  # more components, less error
    assert np.all(np.diff(final["em_train_log_likelihood"]) >= -1e-12)  # EM never lowers the likelihood
    assert final["em_test_log_likelihood"] < final["true_test_log_likelihood"] + 0.1


def test_quiet_demo_prints_only_the_json_line(demo, tmp_path, capsys):
    demo.main(["--limit", "100", "--n-init", "1", "--clusters", "3", "--density-samples", "100",
               "--out", str(tmp_path), "--quiet"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and set(json.loads(lines[0])) >= {"kmeans_inertia_per_image", "nmi", "purity"}
