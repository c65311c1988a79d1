"""The demos' shared command line and bookkeeping: metrics.json, the last JSON line, exact resumption."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import experiment, nn, optim

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _args(*argv, **defaults):
    return experiment.demo_parser("a test demo", **defaults).parse_args(list(argv))


def test_demo_parser_defaults_and_flags():
    args = _args(epochs=7, batch_size=32, lr=0.5, datasets=("embedded", "mnist"))
    assert (args.dataset, args.epochs, args.batch_size, args.lr, args.seed) == ("embedded", 7, 32, 0.5, 0)
    assert (args.backend, args.out, args.resume, args.quiet) == (sg.get_backend(), None, False, False)  # the active one
    args = _args("--dataset", "mnist", "--epochs", "3", "--batch-size", "8", "--lr", "1e-4", "--seed", "5",
                 "--out", "somewhere", "--resume", "--quiet", datasets=("embedded", "mnist"))
    assert (args.dataset, args.epochs, args.batch_size, args.lr, args.seed) == ("mnist", 3, 8, 1e-4, 5)
    assert (args.out, args.resume, args.quiet) == ("somewhere", True, True)
    for name in ("numpy", "cupy", "strict"):  # strict too: the test instrument SCRATCHGEN_BACKEND=strict selects
        assert _args("--backend", name).backend == name


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--epochs", "-1"], ["--dataset", "cifar"],
                                  ["--backend", "torch"]])
def test_demo_parser_rejects_bad_values(argv, capsys):
    with pytest.raises(SystemExit):
        _args(*argv, datasets=("embedded",))
    assert argv[0] in capsys.readouterr().err


def test_run_writes_metrics_json_and_prints_the_final_json_line_last(tmp_path, capsys):
    args = _args("--out", str(tmp_path / "out"), "--seed", "3")
    run = experiment.Run(args, name="test")
    assert run.path("samples.png") == str(tmp_path / "out" / "samples.png")
    run.log_epoch(1, loss=sg.tensor(0.5), kl=np.float32(0.25))
    run.log_epoch(2, loss=0.25, kl=float("nan"))
    report = run.finish(loss=0.25, accuracy=np.float64(0.9), diverged=float("inf"))

    with open(tmp_path / "out" / "metrics.json") as file:
        written = json.load(file)
    assert written == report
    assert set(written) == {"name", "final", "history", "args", "backend", "wall_time_s", "scratchgen_version"}
    assert written["final"] == {"loss": 0.25, "accuracy": 0.9, "diverged": None}
    assert written["history"] == [{"epoch": 1, "loss": 0.5, "kl": 0.25}, {"epoch": 2, "loss": 0.25, "kl": None}]
    assert written["args"]["seed"] == 3 and written["args"]["batch_size"] == 64
    assert written["backend"] == sg.get_backend() and written["scratchgen_version"] == sg.__version__
    assert written["wall_time_s"] >= 0

    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("epoch 1/10  loss 0.5  kl 0.25")
    assert json.loads(lines[-1]) == written["final"]


def test_quiet_prints_only_the_json_line(tmp_path, capsys):
    run = experiment.Run(_args("--out", str(tmp_path), "--quiet"), name="test")
    run.log_epoch(1, loss=1.0)
    run.finish(loss=1.0)
    assert capsys.readouterr().out == '{"loss": 1.0}\n'


def test_default_output_folder_and_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = experiment.Run(_args("--seed", "11"), name="vae")
    assert run.out == os.path.join("runs", "vae") and os.path.isdir(tmp_path / "runs" / "vae")
    first = sg.randn(3).numpy()
    sg.manual_seed(11)
    np.testing.assert_array_equal(first, sg.randn(3).numpy())


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    run = experiment.Run(_args("--out", str(tmp_path), "--resume"), name="test")
    with pytest.raises(FileNotFoundError, match="checkpoint.npz"):
        run.resume(model=nn.Linear(2, 2))


def test_a_fresh_run_starts_at_epoch_one_and_rejects_stateless_objects(tmp_path):
    run = experiment.Run(_args("--out", str(tmp_path)), name="test")
    assert run.resume(model=nn.Linear(2, 2)) == 1
    assert run.load_checkpoint() is None
    with pytest.raises(TypeError, match="lr=float"):
        run.resume(lr=0.1)


def test_resume_restores_objects_history_state_and_random_generator(tmp_path, capsys):
    out = str(tmp_path)
    run = experiment.Run(_args("--out", out, "--lr", "0.1"), name="test")
    model = nn.Linear(2, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    run.resume(model=model, optimizer=opt)
    run.state["snapshots"] = [np.ones(3, np.float32)]
    run.log_epoch(1, loss=1.0)
    run.save_checkpoint(1)
    expected_draw = sg.randn(4).numpy()

    resumed = experiment.Run(_args("--out", out, "--resume", "--lr", "0.2"), name="test")
    other = nn.Linear(2, 2)
    with pytest.warns(UserWarning, match=r"'lr': \(0.1, 0.2\)"):
        start = resumed.resume(model=other, optimizer=optim.SGD(other.parameters(), lr=0.2))
    assert start == 2
    np.testing.assert_array_equal(other.weight.numpy(), model.weight.numpy())
    np.testing.assert_array_equal(resumed.state["snapshots"][0], np.ones(3))
    assert resumed.history.records == [{"epoch": 1, "loss": 1.0}]
    np.testing.assert_array_equal(sg.randn(4).numpy(), expected_draw)
    assert f"resumed from {os.path.join(out, 'checkpoint.npz')} after epoch 1" in capsys.readouterr().out

    with pytest.raises(sg.CheckpointError, match=r"holds no \['generator'\]"):
        experiment.Run(_args("--out", out, "--resume"), name="test").resume(generator=nn.Linear(2, 2))


# A whole demo in the shape the real ones take, run as separate processes: the real test of resuming.
_DEMO = textwrap.dedent("""
    import numpy as np
    import scratchgen as sg
    from scratchgen import experiment, nn, optim
    from scratchgen.data import DataLoader
    from scratchgen.train import EarlyStopping

    args = experiment.demo_parser("tiny regression", epochs=4, batch_size=10, lr=1e-2).parse_args()
    run = experiment.Run(args, name="tiny")
    x = np.random.default_rng(0).standard_normal((48, 6)).astype(np.float32)
    loader = DataLoader(x, x[:, :2] ** 2, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    opt = optim.Adam(model.parameters(), lr=args.lr)
    stopper = EarlyStopping("loss", patience=10)
    start = run.resume(model=model, optimizer=opt, loader=loader, stopper=stopper)
    snapshots = run.state.setdefault("snapshots", [])
    for epoch in range(start, args.epochs + 1):
        losses = []
        for xb, yb in run.progress(loader, epoch):
            opt.zero_grad()
            loss = ((model(xb) - yb) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        snapshots.append(sg.randn(2).numpy())  # a random draw outside the loader, kept in the run's state
        run.log_epoch(epoch, loss=sum(losses) / len(losses), last=losses[-1])
        stopper.step(run.history.last["loss"])
        run.save_checkpoint(epoch)
    run.finish(loss=run.history.last["loss"], snapshot=float(snapshots[-1][0]), best=stopper.best)
""")


def _run_demo(script, *argv):
    result = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": REPO, "SCRATCHGEN_BACKEND": "numpy"})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_a_resumed_demo_repeats_the_uninterrupted_run_bit_for_bit(tmp_path):
    script = tmp_path / "demo.py"
    script.write_text(_DEMO)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole_lines = _run_demo(script, "--out", str(whole))
    _run_demo(script, "--out", str(parts), "--epochs", "2", "--quiet")
    resumed_lines = _run_demo(script, "--out", str(parts), "--epochs", "4", "--resume")

    assert resumed_lines[0].startswith("resumed from") and resumed_lines[1].startswith("epoch 3/4")
    assert json.loads(resumed_lines[-1]) == json.loads(whole_lines[-1])  # the final JSON line, last
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (whole, parts)]
    assert [r["epoch"] for r in metrics[1]["history"]] == [1, 2, 3, 4]
    assert metrics[1]["history"] == metrics[0]["history"]  # floats through JSON's repr: bit for bit
    final_states = [sg.load(folder / "checkpoint.npz") for folder in (whole, parts)]
    for name, weight in final_states[0]["objects"]["model"].items():
        assert weight.tobytes() == final_states[1]["objects"]["model"][name].tobytes(), name
    assert final_states[0]["rng"] == final_states[1]["rng"]
