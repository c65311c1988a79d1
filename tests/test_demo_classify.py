"""The first demo end to end: it trains, writes its pictures and metrics, prints JSON last, and resumes."""

import json

import scratchgen as sg
from conftest import last_json_line, load_demo


def run_demo(args, capsys):
    report = load_demo("classify_mnist").main(args)
    return report, last_json_line(capsys)


def test_classify_demo_writes_pictures_and_metrics(tmp_path, capsys):
    report, printed = run_demo(["--epochs", "2", "--out", str(tmp_path), "--quiet"], capsys)
    assert printed == report["final"] and printed["test_accuracy"] > 0.85
    for name in ("learning_curve.png", "predictions.png", "metrics.json", "checkpoint.npz"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in saved["history"]] == [1, 2]
    assert saved["args"]["epochs"] == 2 and saved["backend"] == sg.get_backend() and saved["wall_time_s"] > 0


def test_classify_demo_resumes_exactly(tmp_path, capsys):
    straight, _ = run_demo(["--epochs", "2", "--out", str(tmp_path / "a"), "--quiet"], capsys)
    run_demo(["--epochs", "1", "--out", str(tmp_path / "b"), "--quiet"], capsys)
    resumed, _ = run_demo(["--epochs", "2", "--out", str(tmp_path / "b"), "--quiet", "--resume"], capsys)
    assert resumed["history"] == straight["history"]  # same losses and accuracies, bit for bit
