"""Checkpoints: exact round trips, atomic writes, refusal of damage and of pickles, and exact resumption."""

import json
import os

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import checkpoint, nn, optim
from scratchgen.data import DataLoader
from conftest import host


def _assert_same(a, b, where="state"):
    """Equal values of identical types, arrays equal in dtype, shape and every bit."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} became {list(b)}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} became {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} became {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: values changed"
    else:
        assert a == b, f"{where}: {a!r} became {b!r}"


def _trained_model_and_adam():
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    for _ in range(2):
        opt.zero_grad()
        (model(sg.randn(4, 3)) ** 2).mean().backward()
        opt.step()
    return model, opt


def _host(state):
    """A state dict with every array copied to the host, for comparison with what load returns."""
    return {k: np.array(sg.backend.to_numpy(v)) if hasattr(v, "shape") else v for k, v in state.items()}


def test_round_trip_of_a_training_state(tmp_path):
    model, opt = _trained_model_and_adam()
    state = {
        "model": _host(model.state_dict()),
        "optimizer": {"hyperparameters": opt.state_dict()["hyperparameters"],
                      "state": {k: _host(v) for k, v in opt.state_dict()["state"].items()}},
        "rng": np.random.default_rng(5).bit_generator.state,  # holds 128-bit integers, as get_rng_state's does
        "epoch": 3, "big": 2**200, "negative": -7, "loss": 0.1 + 0.2, "tiny": 5e-324, "name": "vae ✓",
        "flags": [True, False, None], "pair": (1, ("nested", 2.5)), "empty": {}, "nothing": [],
        "scalar": np.float32(1.25), "count": np.int64(-3),
        "arrays": [np.arange(6, dtype=np.uint8).reshape(2, 3), np.array(2.0), np.zeros((0, 4)),
                   np.array([True, False]), np.asfortranarray(np.arange(6.0).reshape(2, 3))],
        "odd keys": {"": 1, "a.b": 2, "0": 3, "__array": 4},
    }
    path = sg.save(state, tmp_path / "state.npz")
    assert path == str(tmp_path / "state.npz")
    _assert_same(state, sg.load(path))


def test_loaded_state_restores_model_and_optimizer(tmp_path):
    model, opt = _trained_model_and_adam()
    sg.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "c.npz")
    sg.manual_seed(99)  # a differently initialised copy
    fresh_model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    fresh_opt = optim.Adam(fresh_model.parameters(), lr=1.0)
    state = sg.load(tmp_path / "c.npz")
    fresh_model.load_state_dict(state["model"])
    fresh_opt.load_state_dict(state["optimizer"])
    for (name, p), q in zip(model.named_parameters(), fresh_model.parameters()):
        np.testing.assert_array_equal(sg.backend.to_numpy(p.data), sg.backend.to_numpy(q.data), err_msg=name)
    assert fresh_opt.lr == opt.lr and fresh_opt.betas == opt.betas
    assert fresh_opt.state[0]["step"] == 2
    np.testing.assert_array_equal(host(fresh_opt.state[3]["exp_avg_sq"]), host(opt.state[3]["exp_avg_sq"]))


def test_arrays_of_either_backend_are_saved_from_the_host(tmp_path, backend):
    model, opt = _trained_model_and_adam()
    sg.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "c.npz")
    state = sg.load(tmp_path / "c.npz")
    assert all(type(a) is np.ndarray for a in state["model"].values())
    copy = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    copy.load_state_dict(state["model"])  # back onto the active backend
    for p, q in zip(model.parameters(), copy.parameters()):
        assert sg.backend.device_of(q.data) == sg.backend.device_of(p.data)
        np.testing.assert_array_equal(sg.backend.to_numpy(q.data), sg.backend.to_numpy(p.data))


def test_file_is_an_ordinary_npz_with_json_metadata(tmp_path):
    sg.save({"w": np.ones((2, 2), np.float32), "epoch": 1}, tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        metadata = json.loads(npz["metadata"].tobytes())
        np.testing.assert_array_equal(npz["a0"], np.ones((2, 2)))
    assert metadata["format"] == checkpoint.FORMAT and metadata["version"] == checkpoint.VERSION
    assert metadata["state"] == {"w": {"__array__": "a0"}, "epoch": 1}
    assert len(metadata["arrays"]["a0"]["sha256"]) == 64


@pytest.mark.parametrize("state, message", [
    ({"x": sg.tensor([1.0])}, r"state\['x'\] is a Tensor.*state_dict"),
    ({"x": {1: 2}}, r"key 1 in state\['x'\] is a int"),
    ({"x": [object()]}, r"state\['x'\]\[0\] is a object"),
    ({"x": np.array([{}, None], dtype=object)}, r"array of Python objects"),
    ({"__tuple__": 1}, r"reserved"),
])
def test_unsavable_values_are_named(tmp_path, state, message):
    with pytest.raises(sg.CheckpointError, match=message):
        sg.save(state, tmp_path / "c.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("failure", ["rename", "writer"])
def test_a_crash_while_writing_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "checkpoint.npz"
    sg.save({"epoch": 1, "w": np.zeros(3)}, path)

    def crash(*args, **kwargs):
        if failure == "writer":  # half a file written, then the process "dies"
            args[0].write(b"PK\x03\x04 half a zip")
        raise OSError("simulated crash")

    monkeypatch.setattr(checkpoint.os if failure == "rename" else checkpoint.numpy,
                        "replace" if failure == "rename" else "savez", crash)
    with pytest.raises(OSError, match="simulated crash"):
        sg.save({"epoch": 2, "w": np.ones(3)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    assert sg.load(path)["epoch"] == 1


def test_atomic_write_text_and_new_folders(tmp_path):
    target = tmp_path / "new" / "folder" / "notes.txt"
    with checkpoint.atomic_write(target, "w") as file:
        file.write("héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert os.listdir(target.parent) == ["notes.txt"]


@pytest.mark.parametrize("keep", [0, 10, 0.5, -1])
def test_truncated_file_is_a_clear_error(tmp_path, keep):
    good = tmp_path / "good.npz"
    sg.save({"w": np.arange(1000, dtype=np.float32), "epoch": 4}, good)
    data = good.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[:int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(sg.CheckpointError, match="cut.npz"):
        sg.load(cut)


def test_flipped_byte_in_an_array_is_detected(tmp_path):
    path = tmp_path / "c.npz"
    weights = np.arange(1000, dtype=np.float32)
    sg.save({"w": weights}, path)
    data = bytearray(path.read_bytes())
    data[data.find(weights[500:510].tobytes())] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(sg.CheckpointError, match="c.npz"):
        sg.load(path)


def test_array_rewritten_with_a_valid_zip_is_caught_by_its_hash(tmp_path):
    path = tmp_path / "c.npz"
    sg.save({"w": np.zeros(4, np.float32)}, path)
    with np.load(path) as npz:
        entries = dict(npz)
    entries["a0"] = np.array([0, 0, 1, 0], np.float32)  # same dtype and shape, consistent zip CRC
    with open(path, "wb") as file:
        np.savez(file, **entries)
    with pytest.raises(sg.CheckpointError, match="'a0'.*SHA-256"):
        sg.load(path)


def test_a_missing_or_extra_entry_is_detected(tmp_path):
    path = tmp_path / "c.npz"
    sg.save({"w": np.zeros(4), "v": np.ones(2)}, path)
    with np.load(path) as npz:
        entries = dict(npz)
    for change, message in [({"a1": None}, "lacks the array entry 'a1'"), ({"a9": np.ones(1)}, r"entries \['a9'\]")]:
        edited = {k: v for k, v in {**entries, **change}.items() if v is not None}
        with open(path, "wb") as file:
            np.savez(file, **edited)
        with pytest.raises(sg.CheckpointError, match=message):
            sg.load(path)


class _Exploit:
    """An object whose unpickling writes a marker file: proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("entry", ["a0", "metadata"])
def test_a_pickled_object_is_refused_without_being_unpickled(tmp_path, entry):
    path, marker = tmp_path / "evil.npz", tmp_path / "unpickled"
    sg.save({"w": np.zeros(3)}, path)
    with np.load(path) as npz:
        entries = dict(npz)
    entries[entry] = np.array([_Exploit(marker)], dtype=object)
    with open(path, "wb") as file:
        np.savez(file, **entries)  # numpy's writer pickles object arrays

    with pytest.raises(sg.CheckpointError, match="evil.npz.*pickle"):
        sg.load(path)
    assert not marker.exists()

    # The control: loading the same file with pickles allowed does run the payload.
    with np.load(path, allow_pickle=True) as npz:
        npz[entry]
    assert marker.exists()


def test_other_files_are_not_checkpoints(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.ones(2))
    np.save(tmp_path / "array.npy", np.ones(2))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(sg.CheckpointError, match="no 'metadata' entry"):
        sg.load(tmp_path / "plain.npz")
    with pytest.raises(sg.CheckpointError, match="single .npy array"):
        sg.load(tmp_path / "array.npy")
    with pytest.raises(sg.CheckpointError, match="text.npz"):
        sg.load(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        sg.load(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------------- exact resumption

_X = np.random.default_rng(0).standard_normal((48, 6)).astype(np.float32)
_Y = (_X[:, :2] ** 2).astype(np.float32)


def _build(seed):
    """Model, optimiser and loader as a fresh process would build them (dropout: the RNG matters)."""
    sg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    loader = DataLoader(_X, _Y, batch_size=10, shuffle=True, seed=7)
    return model, opt, loader


def _train(model, opt, loader, epochs):
    losses = []
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def _resumed_losses(tmp_path, restore_rng=True):
    model, opt, loader = _build(0)
    first = _train(model, opt, loader, 2)
    sg.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "loader": loader.state_dict(),
             "rng": sg.backend.get_rng_state(), "epoch": 2}, tmp_path / "checkpoint.npz")
    del model, opt, loader
    model, opt, loader = _build(123)  # even a different seed is fully overridden by the checkpoint
    state = sg.load(tmp_path / "checkpoint.npz")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    loader.load_state_dict(state["loader"])
    if restore_rng:
        sg.backend.set_rng_state(state["rng"])
    return first + _train(model, opt, loader, 2), model


@pytest.mark.numpy_only("an exact resume restores the saved random state, which only NumPy's generator can save")
def test_resuming_from_a_checkpoint_repeats_the_uninterrupted_run_bit_for_bit(tmp_path):
    model, opt, loader = _build(0)
    uninterrupted = _train(model, opt, loader, 4)
    resumed, resumed_model = _resumed_losses(tmp_path)
    assert resumed == uninterrupted
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        assert p.data.tobytes() == q.data.tobytes()

    # The control: without the saved random state, dropout's masks differ and so do the losses.
    without_rng, _ = _resumed_losses(tmp_path, restore_rng=False)
    assert without_rng[:10] == uninterrupted[:10] and without_rng[10:] != uninterrupted[10:]
