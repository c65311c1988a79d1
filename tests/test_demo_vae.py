"""Smoke tests of demos/vae.py: tiny runs write every picture and metrics.json, end with one JSON line, resume."""

import json
import os

import pytest

from conftest import last_json_line, load_demo



@pytest.fixture(scope="module")
def demo():
    return load_demo("vae")


FINAL_KEYS = {"test_neg_elbo", "test_rec", "test_kl", "test_nll_is", "k", "train_seconds", "eval_seconds",
              "nearest_train_distance_median", "test_nearest_train_distance_median", "train_nll_is", "train_nll_images",
              "train_nll_eval_seconds"}


def test_dense_2d_demo_writes_the_manifold_and_resumes(demo, tmp_path, capsys):
    out = str(tmp_path / "vae")
    argv = ["--limit", "200", "--latent-dim", "2", "--k", "4", "--out", out, "--quiet"]
    demo.main(argv + ["--epochs", "1"])
    first = last_json_line(capsys)
    assert set(first) == FINAL_KEYS and first["train_nll_images"] == 200  # the dense model: every training digit
    assert 0 < first["train_nll_is"] < float("inf")

    with pytest.warns(UserWarning, match="train_nll_images"):  # it may change on resuming, and is reported
        demo.main(argv + ["--epochs", "2", "--resume", "--train-nll-images", "50"])
    final = last_json_line(capsys)
    assert final["train_nll_images"] == 50 and 0 < final["train_nll_is"] < float("inf")
    with open(os.path.join(out, "metrics.json")) as file:
        report = json.load(file)
    assert report["final"] == final and final["k"] == 4
    assert [record["epoch"] for record in report["history"]] == [1, 2]
    assert abs(final["test_neg_elbo"] - (final["test_rec"] + final["test_kl"])) < 1e-3
    for name in ("samples", "sample_draws", "reconstructions", "interpolations", "latent_codes", "manifold",
                 "loss_curves", "nearest_training"):
        assert os.path.getsize(os.path.join(out, f"{name}.png")) > 0, name


def test_conv_gaussian_iwae_demo_runs(demo, tmp_path, capsys):
    out = str(tmp_path / "conv")
    demo.main(["--model", "conv", "--likelihood", "gaussian", "--iwae-k", "2", "--hidden", "16", "--limit", "60",
               "--epochs", "1", "--batch-size", "30", "--k", "2", "--out", out, "--quiet"])
    final = last_json_line(capsys)
    assert set(final) == FINAL_KEYS and final["train_nll_images"] == 60  # the conv default, 1,000, cut by --limit
    assert os.path.exists(os.path.join(out, "latent_codes.png"))
    assert not os.path.exists(os.path.join(out, "manifold.png"))  # a 20-d code has no 2-D manifold picture


@pytest.mark.numpy_only("resuming exactly restores the saved random state, which only NumPy's generator can save")
def test_dynamic_binarisation_trains_on_fresh_draws_and_resumes_exactly(demo, tmp_path, capsys):
    argv = ["--binarize", "dynamic", "--limit", "100", "--hidden", "16", "--latent-dim", "2", "--k", "2", "--quiet"]
    whole = demo.main(argv + ["--epochs", "2", "--out", str(tmp_path / "whole")])
    demo.main(argv + ["--epochs", "1", "--out", str(tmp_path / "parts")])
    resumed = demo.main(argv + ["--epochs", "2", "--out", str(tmp_path / "parts"), "--resume"])
    assert whole["args"]["binarize"] == "dynamic"  # recorded in metrics.json
    assert resumed["history"] == whole["history"]  # the draws come from the run's seeded, checkpointed stream
    assert os.path.getsize(tmp_path / "whole" / "nearest_training.png") > 0
    with pytest.raises(SystemExit):
        demo.main(["--likelihood", "gaussian", "--binarize", "dynamic", "--out", str(tmp_path / "x")])
    assert "--binarize is for the Bernoulli decoder" in capsys.readouterr().err
