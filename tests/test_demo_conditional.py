"""Smoke tests of demos/conditional.py: tiny runs of each model write their pictures and metrics, end with
one JSON line, and resume; the flags it refuses."""

import os

import pytest

from conftest import load_demo, run_then_resume


@pytest.fixture(scope="module")
def demo():
    return load_demo("conditional")


COMMON = ["--limit", "300", "--eval-samples", "200", "--cas-samples", "100", "--judge-epochs", "1", "--quiet"]
SHARED_KEYS = {"conditional_accuracy", "cas", "real_cas", "train_seconds", "eval_seconds",
               "nearest_train_distance_median", "test_nearest_train_distance_median"}
GAN_KEYS = SHARED_KEYS | {"class_shares", "inception_score", "frechet_distance", "min_class_share", "drawn_label_shares",
                          "real_inception_score", "real_frechet_distance"}
MODEL_KEYS = {
    "cgan": GAN_KEYS, "joint-gan": GAN_KEYS,
    "cvae": SHARED_KEYS | {"test_nll_given_label", "test_nll_marginal", "k"},
    "made": SHARED_KEYS | {"test_nll_given_label", "test_nll_marginal", "bayes_accuracy", "cnn_accuracy"},
}


@pytest.mark.parametrize("model", sorted(MODEL_KEYS))
def test_each_model_writes_its_pictures_and_metrics_and_resumes(demo, model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SCRATCHGEN_DATA_DIR", str(tmp_path / "cache"))  # the judge is trained and cached here
    out = str(tmp_path / model)
    size = ["--iterations-per-epoch", "5"] if model in ("cgan", "joint-gan") else ["--hidden", "16", "--k", "3"]
    argv = ["--model", model, "--out", out] + size + COMMON
    final, _ = run_then_resume(demo, argv, capsys)
    assert set(final) == MODEL_KEYS[model]
    assert 0 <= final["conditional_accuracy"] <= 1 and 0 <= final["cas"] <= 1
    pictures = ["digits", "losses", "nearest_training"] + (["interpolation"] if model in ("cgan", "cvae") else [])
    for name in pictures:
        assert os.path.getsize(os.path.join(out, f"{name}.png")) > 0, name
    if model == "cgan":  # asked for equally many of each digit
        assert final["drawn_label_shares"] == [0.1] * 10


def test_sample_counts_must_give_each_digit_as_many(demo, tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.main(["--eval-samples", "105", "--out", str(tmp_path / "x")])
    assert "--eval-samples must be a multiple of 10" in capsys.readouterr().err
