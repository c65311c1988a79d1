"""Smoke test of demos/autoencoder.py: a tiny run writes its pictures and metrics and ends with a JSON line."""

import json

import pytest

from conftest import last_json_line, load_demo

PICTURES = ("reconstructions.png", "codes.png", "denoising.png", "loss.png")
FINAL = ("test_bce", "test_mse", "pca_test_bce", "pca_test_mse", "probe_accuracy", "pca_probe_accuracy",
         "noisy_mse", "denoised_mse")


@pytest.fixture(scope="module")
def demo():
    return load_demo("autoencoder")


@pytest.mark.parametrize("argv", [[], ["--model", "dense", "--code-size", "2"],
                                  ["--model", "denoising", "--noise", "masking"]],
                         ids=["conv", "dense-2d", "denoising"])
def test_demo_writes_pictures_and_metrics_and_ends_with_json(demo, argv, tmp_path, capsys):
    out = tmp_path / "run"
    report = demo.main(argv + ["--epochs", "1", "--limit", "100", "--out", str(out), "--quiet"])
    for name in PICTURES + ("metrics.json", "checkpoint.npz"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "metrics.json") as file:
        written = json.load(file)
    assert written == report and set(written["final"]) == set(FINAL)
    assert all(0 <= written["final"][name] < 1 for name in FINAL)
    assert [r["epoch"] for r in written["history"]] == [1]
    assert last_json_line(capsys) == written["final"]


def test_demo_default_epochs_depend_on_the_model_and_resume_continues(demo, tmp_path, capsys):
    out = str(tmp_path / "run")
    common = ["--model", "dense", "--limit", "64", "--out", out, "--quiet"]
    demo.main(common + ["--epochs", "1"])
    report = demo.main(common + ["--epochs", "2", "--resume"])
    assert [r["epoch"] for r in report["history"]] == [1, 2]
    assert report["args"]["epochs"] == 2
    assert demo.DEFAULT_EPOCHS == {"conv": 30, "dense": 60, "deep": 60, "denoising": 30}


@pytest.mark.parametrize("walkbacks", [1, 3])
def test_demo_chain_writes_the_chain_pictures_and_judges_its_samples(demo, tmp_path, monkeypatch, capsys, walkbacks):
    monkeypatch.setenv("SCRATCHGEN_DATA_DIR", str(tmp_path / "cache"))  # the judge is trained and cached here
    out = tmp_path / "run"
    report = demo.main(["--model", "denoising", "--noise", "salt_and_pepper", "--noise-level", "0.4", "--chain",
                        "--chains", "8", "--chain-steps", "20", "--judge-epochs", "1", "--judge-subset", "300",
                        "--epochs", "1", "--limit", "100", "--walkbacks", str(walkbacks), "--out", str(out), "--quiet"])
    assert report["args"]["walkbacks"] == walkbacks and 0 < report["history"][0]["train_loss"] < 1
    for name in PICTURES + ("chain.png", "chain_samples.png"):
        assert (out / name).stat().st_size > 0, name
    final = report["final"]
    assert len(final["chain_class_shares"]) == 10 and abs(sum(final["chain_class_shares"]) - 1) < 1e-9
    assert final["chain_min_class_share"] == min(final["chain_class_shares"])
    assert 1 <= final["chain_digits_visited"] <= 10 and 1 <= final["mean_chain_digits_visited"] <= 10
    assert last_json_line(capsys) == final


def test_demo_chain_needs_the_denoising_model(demo, tmp_path):
    with pytest.raises(SystemExit):
        demo.main(["--chain", "--out", str(tmp_path / "run"), "--quiet"])


def test_demo_walkbacks_need_the_chain(demo, tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.main(["--model", "denoising", "--walkbacks", "2", "--out", str(tmp_path / "run"), "--quiet"])
    assert "--walkbacks trains along the denoising autoencoder's chain" in capsys.readouterr().err
