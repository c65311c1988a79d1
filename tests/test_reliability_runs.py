"""Runs that lose no work and never hang: the promises of the demos' harness, one test each (issue 15).

* A loop that could never yield is an error that says why, not a hang.
* A diverged run stops at the first non-finite loss, naming the epoch and step and what to try; it keeps
  its last good checkpoint and still writes metrics.json, with the history so far and ``diverged: true``.
  Every training loop does this: classifier, autoencoder, VAE, MADE, PixelCNN, the GAN's two players.
* A checkpoint never holds non-finite weights.
* A fresh run refuses to replace a checkpoint, unless told to with ``--overwrite``.
* On ``--resume`` the command line wins for what may change mid-run (``--epochs``, ``--lr``, flags that
  only change the evaluation), and is recorded; a setting that defines the model or the data must match.
* Every demo argument is checked up front, with argparse's message naming the flag.
"""

import contextlib
import json
import os
import signal

import numpy as np
import pytest

import scratchgen as sg
from conftest import load_demo
from scratchgen import experiment, nn, optim
from scratchgen.data import DataLoader
from scratchgen.train import Diverged, check_finite


@contextlib.contextmanager
def within(seconds: int):
    """Fail, rather than hang the suite, when the block runs longer than ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a loop that never ends?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _args(*argv, **defaults):
    return experiment.demo_parser("a test demo", **defaults).parse_args(list(argv))


def _metrics(folder) -> dict:
    with open(os.path.join(folder, "metrics.json")) as file:
        return json.load(file)


# ---------------------------------------------------------------------------------- loops that never end


def test_endless_batches_from_a_loader_that_holds_no_batch_is_an_error():
    loader = DataLoader(np.zeros((3, 2), np.float32), batch_size=5, drop_last=True)
    with within(5), pytest.raises(ValueError, match=r"batch_size=5.*3 samples holds no batch"):
        loader.endless()
    batches = DataLoader(np.arange(3, dtype=np.float32), batch_size=2, drop_last=True).endless()
    assert [next(batches)[0].shape for _ in range(3)] == [(2,), (2,), (2,)]  # epoch after epoch


def test_a_gan_batch_larger_than_the_training_set_is_an_error_not_a_hang(tmp_path):
    gan = load_demo("gan")
    with within(20), pytest.raises(ValueError, match=r"batch_size=4001.*4000 samples"):
        gan.main(["--dataset", "mnist", "--batch-size", "4001", "--epochs", "1", "--iterations-per-epoch", "1",
                  "--quiet", "--out", str(tmp_path)])


# ---------------------------------------------------------------------------------- diverged runs


def test_a_non_finite_loss_raises_diverged_naming_the_epoch_the_step_and_what_to_try():
    assert check_finite(sg.tensor(np.float32(0.5)), epoch=1, step=1) == 0.5
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(Diverged, match=r"epoch 3, step 7.*D's loss.*learning rate") as caught:
            check_finite(sg.tensor(np.float32(value)), epoch=3, step=7, name="D's loss")
        assert (caught.value.epoch, caught.value.step) == (3, 7)


def test_a_diverged_run_writes_metrics_json_with_diverged_true_and_leaves_no_checkpoint(tmp_path, capsys):
    vae = load_demo("vae")
    out = str(tmp_path / "vae")
    with pytest.raises(Diverged, match=r"epoch 1, step \d+.*learning rate"):
        vae.main(["--lr", "1e4", "--limit", "100", "--batch-size", "20", "--epochs", "2", "--k", "2",
                  "--out", out, "--quiet"])
    report = _metrics(out)
    assert report["diverged"] is True and report["history"] == [] and "epoch 1, step" in report["divergence"]
    assert not os.path.exists(os.path.join(out, "checkpoint.npz"))  # no epoch finished: nothing to keep
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["diverged"] is True  # JSON still last


def test_a_diverged_run_keeps_its_last_good_checkpoint(tmp_path):
    vae = load_demo("vae")
    out = str(tmp_path / "vae")
    common = ["--limit", "100", "--batch-size", "20", "--k", "2", "--out", out, "--quiet"]
    vae.main(common + ["--epochs", "1"])
    with open(os.path.join(out, "checkpoint.npz"), "rb") as file:
        good = file.read()
    with pytest.raises(Diverged, match=r"epoch 2, step \d+.*learning rate") as caught:
        vae.main(common + ["--epochs", "3", "--resume", "--lr", "1e4"])
    assert "after epoch 1, is kept" in str(caught.value)  # where the last good checkpoint is, and how to go on
    with open(os.path.join(out, "checkpoint.npz"), "rb") as file:
        assert file.read() == good
    report = _metrics(out)
    assert report["diverged"] is True and [r["epoch"] for r in report["history"]] == [1]
    assert "epoch 2, step" in report["divergence"] and "--resume" in report["divergence"]


def _poison_after_first_checkpoint(monkeypatch, cls, method):
    """From the first checkpoint on, ``cls.method`` returns NaN while a graph is recorded (training, not
    evaluation): the loss of the next training step is then NaN."""
    poisoned = []
    save, original = experiment.Run.save_checkpoint, getattr(cls, method)

    def save_then_poison(self, epoch):
        path = save(self, epoch)
        poisoned.append(epoch)
        return path

    def poisoned_method(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        return result * float("nan") if poisoned and sg.is_grad_enabled() else result

    monkeypatch.setattr(experiment.Run, "save_checkpoint", save_then_poison)
    monkeypatch.setattr(cls, method, poisoned_method)


def _loops():
    from scratchgen.models import MADE, PixelCNN
    from scratchgen.models.autoencoder import Autoencoder
    from scratchgen.models.classifier import MLPClassifier
    from scratchgen.models.gan import MLPDiscriminator, MLPGenerator

    gan = ["--dataset", "ring8", "--iterations-per-epoch", "3", "--batch-size", "20", "--eval-samples", "100"]
    return [
        pytest.param("classify_mnist", MLPClassifier, "forward", ["--batch-size", "500"], "loss", id="classifier"),
        pytest.param("autoencoder", Autoencoder, "forward", ["--model", "dense", "--limit", "64"], "loss",
                     id="autoencoder"),
        pytest.param("made", MADE, "log_prob", ["--limit", "50", "--hidden", "16", "--fvsbn-epochs", "0"], "loss",
                     id="made"),
        pytest.param("pixelcnn", PixelCNN, "log_prob", ["--limit", "16", "--channels", "4", "--layers", "1"], "loss",
                     id="pixelcnn"),
        pytest.param("gan", MLPDiscriminator, "forward", gan, "D's loss", id="gan-discriminator"),
        pytest.param("gan", MLPGenerator, "forward", gan, "G's loss", id="gan-generator"),
    ]


@pytest.mark.parametrize("demo, cls, method, argv, loss_name", _loops())
def test_every_training_loop_stops_at_the_first_non_finite_loss(demo, cls, method, argv, loss_name, tmp_path,
                                                                monkeypatch):
    _poison_after_first_checkpoint(monkeypatch, cls, method)
    out = str(tmp_path / demo)
    with pytest.raises(Diverged, match=f"epoch 2, step 1: {loss_name} is nan"):
        load_demo(demo).main(argv + ["--epochs", "3", "--out", out, "--quiet"])
    assert sg.load(os.path.join(out, "checkpoint.npz"))["epoch"] == 1
    report = _metrics(out)
    assert report["diverged"] is True and [r["epoch"] for r in report["history"]] == [1]


def test_the_classifier_training_function_stops_at_a_non_finite_loss(monkeypatch):
    from scratchgen.models.classifier import MLPClassifier, train_classifier

    forward = MLPClassifier.forward
    monkeypatch.setattr(MLPClassifier, "forward", lambda self, x: forward(self, x) * float("nan"))
    images, labels = np.zeros((8, 28, 28), np.uint8), np.arange(8) % 10
    with pytest.raises(Diverged, match="epoch 1, step 1: loss is nan"):
        train_classifier(MLPClassifier(), images, labels, epochs=1, batch_size=4)


def test_a_checkpoint_is_never_written_with_non_finite_weights(tmp_path):
    run = experiment.Run(_args("--out", str(tmp_path)), name="test")
    model = nn.Linear(2, 2)
    run.resume(model=model)
    run.save_checkpoint(1)
    model.weight.data[0, 0] = np.inf
    with pytest.raises(Diverged, match=r"after epoch 2.*model.*weight"):
        run.save_checkpoint(2)
    assert sg.load(run.checkpoint_path)["epoch"] == 1


# ---------------------------------------------------------------------------------- a checkpoint is never replaced silently


def test_a_fresh_run_refuses_to_replace_a_checkpoint(tmp_path):
    run = experiment.Run(_args("--out", str(tmp_path)), name="test")
    run.resume(model=nn.Linear(2, 2))
    run.save_checkpoint(1)
    with open(run.checkpoint_path, "rb") as file:
        saved = file.read()
    with pytest.raises(FileExistsError, match=r"--resume.*--out.*--overwrite"):
        experiment.Run(_args("--out", str(tmp_path)), name="test")
    with open(run.checkpoint_path, "rb") as file:
        assert file.read() == saved

    fresh = experiment.Run(_args("--out", str(tmp_path), "--overwrite"), name="test")  # told to: allowed
    assert fresh.resume(model=nn.Linear(2, 2)) == 1 and fresh.load_checkpoint() is None


# ---------------------------------------------------------------------------------- the resume rule


def _saved_run(tmp_path, *argv, epochs: int = 1, may_change=()):
    """A run of ``argv`` saved after ``epochs`` epochs, with an Adam optimiser at its --lr."""
    parser = experiment.demo_parser("a test demo", lr=0.1)
    parser.add_argument("--latent-dim", type=experiment.positive_int, default=2)
    parser.add_argument("--k", type=experiment.positive_int, default=10)
    run = experiment.Run(parser.parse_args(["--out", str(tmp_path), *argv]), name="test", may_change=may_change)
    model = nn.Linear(2, 2)
    run.resume(model=model, optimizer=optim.Adam(model.parameters(), lr=run.args.lr))
    for epoch in range(1, epochs + 1):
        run.log_epoch(epoch, loss=1.0 / epoch)
        run.save_checkpoint(epoch)
    return parser, model


def test_on_resume_the_command_line_wins_for_the_learning_rate_and_metrics_json_records_it(tmp_path):
    parser, _ = _saved_run(tmp_path)
    run = experiment.Run(parser.parse_args(["--out", str(tmp_path), "--resume", "--lr", "0.01"]), name="test")
    model = nn.Linear(2, 2)
    opt = optim.Adam(model.parameters(), lr=0.01)
    with pytest.warns(UserWarning, match=r"'lr': \(0.1, 0.01\)"):
        assert run.resume(model=model, optimizer=opt) == 2
    assert opt.lr == 0.01  # the checkpoint's 0.1 is not silently put back
    report = run.finish(loss=1.0)
    assert report["args"]["lr"] == 0.01
    assert report["changed_on_resume"] == [{"after_epoch": 1, "lr": [0.1, 0.01]}]


@pytest.mark.parametrize("flags, named", [(["--seed", "1"], "--seed 0"), (["--batch-size", "32"], "--batch-size 64"),
                                          (["--latent-dim", "3"], "--latent-dim 2")])
def test_on_resume_a_setting_that_defines_the_model_or_data_must_match(tmp_path, flags, named):
    parser, _ = _saved_run(tmp_path)
    run = experiment.Run(parser.parse_args(["--out", str(tmp_path), "--resume", *flags]), name="test")
    model = nn.Linear(2, 2)
    before = model.weight.numpy().copy()
    with pytest.warns(UserWarning, match="differ"), pytest.raises(ValueError, match=f"other settings.*{named}"):
        run.resume(model=model)
    np.testing.assert_array_equal(model.weight.numpy(), before)  # nothing loaded


def test_on_resume_a_flag_the_demo_declares_evaluation_only_may_change(tmp_path):
    parser, saved = _saved_run(tmp_path, may_change=("k",))
    run = experiment.Run(parser.parse_args(["--out", str(tmp_path), "--resume", "--k", "3"]), name="test",
                         may_change=("k",))
    model = nn.Linear(2, 2)
    with pytest.warns(UserWarning, match=r"'k': \(10, 3\)"):
        assert run.resume(model=model) == 2
    np.testing.assert_array_equal(model.weight.numpy(), saved.weight.numpy())


def test_resume_with_fewer_epochs_than_were_trained_is_refused(tmp_path):
    parser, _ = _saved_run(tmp_path, epochs=3)
    run = experiment.Run(parser.parse_args(["--out", str(tmp_path), "--resume", "--epochs", "2"]), name="test")
    with pytest.raises(ValueError, match=r"--epochs 2.*3 epochs"):
        run.resume(model=nn.Linear(2, 2))
    run = experiment.Run(parser.parse_args(["--out", str(tmp_path), "--resume", "--epochs", "3"]), name="test")
    assert run.resume(model=nn.Linear(2, 2)) == 4  # nothing left to train: evaluate and draw again


# ---------------------------------------------------------------------------------- arguments checked up front


BAD_ARGUMENTS = [
    ("vae", ["--limit", "0"]), ("vae", ["--limit", "-5"]), ("vae", ["--lr", "0"]), ("vae", ["--lr", "nan"]),
    ("vae", ["--seed", "-1"]), ("vae", ["--latent-dim", "0"]), ("vae", ["--hidden", "0"]), ("vae", ["--k", "0"]),
    ("vae", ["--iwae-k", "0"]),
    ("classify_mnist", ["--lr", "-1"]),
    ("autoencoder", ["--limit", "0"]), ("autoencoder", ["--code-size", "0"]), ("autoencoder", ["--noise-level", "-1"]),
    ("autoencoder", ["--noise", "masking", "--noise-level", "1.5"]),
    ("made", ["--limit", "-1"]), ("made", ["--hidden", "0"]), ("made", ["--num-masks", "0"]),
    ("made", ["--resample-every", "0"]), ("made", ["--components", "0"]), ("made", ["--samples", "0"]),
    ("made", ["--fvsbn-epochs", "-1"]),
    ("pixelcnn", ["--limit", "0"]), ("pixelcnn", ["--channels", "0"]), ("pixelcnn", ["--layers", "-1"]),
    ("pixelcnn", ["--samples", "0"]), ("pixelcnn", ["--completions", "0"]),
    ("gan", ["--iterations-per-epoch", "0"]), ("gan", ["--k", "0"]), ("gan", ["--packing", "0"]),
    ("gan", ["--batch-size", "20", "--packing", "3"]), ("gan", ["--beta1", "1"]), ("gan", ["--beta2", "-0.1"]),
    ("gan", ["--decay-from", "1.5"]), ("gan", ["--latent-dim", "0"]), ("gan", ["--eval-samples", "0"]),
    ("gan", ["--judge-epochs", "0"]), ("gan", ["--judge-subset", "0"]),
]


@pytest.mark.parametrize("demo, argv", BAD_ARGUMENTS, ids=[f"{d} {' '.join(a)}" for d, a in BAD_ARGUMENTS])
def test_every_demo_argument_is_checked_up_front(demo, argv, tmp_path, capsys):
    module = load_demo(demo)
    # Tiny settings, so that a demo which let the argument through finishes (and fails the test) quickly.
    tiny = {"vae": ["--epochs", "1", "--k", "1", "--batch-size", "500"],
            "classify_mnist": ["--epochs", "1", "--batch-size", "500"],
            "autoencoder": ["--epochs", "1", "--model", "dense", "--batch-size", "500"]}.get(demo, [])
    parse = module.parse_args if hasattr(module, "parse_args") else module.main
    with within(60), pytest.raises(SystemExit) as caught:
        parse(tiny + argv + ["--out", str(tmp_path), "--quiet"])
    assert caught.value.code == 2  # argparse's usage error
    error = capsys.readouterr().err
    assert argv[-2] in error, error
