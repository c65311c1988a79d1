"""Promises about state read back in: all of it is checked before any of it is used, and damage is an error.

Loading a model's or an optimiser's state, a checkpoint or the embedded MNIST file either gives back exactly
what was saved, or raises one clear error (naming the file, the layer, the shapes) and changes nothing.
"""

import io
import json
import re
import shutil
import tracemalloc
import zipfile

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import checkpoint, nn, optim
from scratchgen.data import ChecksumError, load_mnist, mnist
from test_checkpoint import _assert_same


def _snapshot(module):
    """Every parameter and buffer of ``module`` as host bytes, to prove that nothing changed."""
    return {name: sg.backend.to_numpy(value).tobytes() for name, value in module.state_dict().items()}


# ----------------------------------------------------------------------------------------- modules


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_a_failed_load_leaves_the_model_untouched():
    model, other = _model(), _model()
    before = _snapshot(model)
    state = {name: np.array(sg.backend.to_numpy(value)) for name, value in other.state_dict().items()}
    state["3.bias"] = np.zeros(5, dtype=np.float32)  # the last entry is the wrong one
    with pytest.raises(ValueError, match=r"3\.bias has shape \(5,\) in the state dict but \(2,\) in the model"):
        model.load_state_dict(state)
    assert _snapshot(model) == before


@pytest.mark.parametrize("name, value, message", [
    ("1.num_batches_tracked", np.array(2.7), r"1\.num_batches_tracked is float64 in the state dict but int64"),
    ("0.weight", np.full((4, 3), "x"), r"0\.weight is <U1 in the state dict but float32"),
    ("0.bias", [0.0, 0.0, 0.0, 0.0], r"0\.bias is a list, not an array"),
])
def test_a_load_refuses_values_that_would_change_kind_and_names_them(name, value, message):
    """Floats into an integer buffer, strings or lists: refused, where a cast would have changed the values."""
    model = _model()
    before = _snapshot(model)
    state = dict(model.state_dict())
    state[name] = value
    with pytest.raises(TypeError, match=message):
        model.load_state_dict(state)
    assert _snapshot(model) == before


def test_a_non_strict_load_checks_the_entries_it_loads():
    model = _model()
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"0\.weight has shape \(3, 4\)"):
        model.load_state_dict({"3.bias": np.ones(2, np.float32), "0.weight": np.ones((3, 4), np.float32)},
                              strict=False)
    assert _snapshot(model) == before


# -------------------------------------------------------------------------------------- optimisers


def _trained(optimizer_cls, **settings):
    """An optimiser with a state after two steps on a two-parameter model."""
    model = nn.Linear(3, 2)
    opt = optimizer_cls(model.parameters(), **settings)
    for _ in range(2):
        opt.zero_grad()
        (model(sg.randn(4, 3)) ** 2).mean().backward()
        opt.step()
    return opt


def _optimizer_snapshot(opt):
    hyperparameters, state = opt.state_dict()["hyperparameters"], opt.state
    return hyperparameters, [{k: sg.backend.to_numpy(v).tobytes() if hasattr(v, "shape") else v
                              for k, v in s.items()} for s in state]


def test_an_optimiser_refuses_another_optimisers_state():
    adam, sgd = _trained(optim.Adam, lr=1e-2), _trained(optim.SGD, lr=0.1, momentum=0.9)
    before = _optimizer_snapshot(sgd)
    with pytest.raises(ValueError, match=r"SGD\.load_state_dict: the state was saved by Adam"):
        sgd.load_state_dict(adam.state_dict())
    assert _optimizer_snapshot(sgd) == before


def test_a_state_saved_before_optimisers_recorded_their_type_is_still_told_apart():
    """Older checkpoints have no "type": they still load into their own optimiser, and not into another,
    whose hyperparameters have other names."""
    state = _trained(optim.Adam, lr=1e-2).state_dict()
    del state["type"]
    adam = optim.Adam(nn.Linear(3, 2).parameters())
    adam.load_state_dict(state)
    assert adam.lr == 1e-2 and adam.state[0]["step"] == 2
    with pytest.raises(ValueError, match=r"missing hyperparameters \['momentum'\], unknown hyperparameters"):
        optim.SGD(nn.Linear(3, 2).parameters(), lr=0.1).load_state_dict(state)


@pytest.mark.parametrize("optimizer_cls, name, value", [
    (optim.SGD, "lr", -5), (optim.SGD, "lr", float("nan")), (optim.SGD, "momentum", 1.5),
    (optim.SGD, "weight_decay", -1.0), (optim.Adam, "lr", 0), (optim.Adam, "betas", (2, -1)),
    (optim.Adam, "betas", (0.9,)), (optim.Adam, "eps", 0.0), (optim.Adam, "lr", "0.1"),
])
def test_hyperparameters_from_a_file_are_checked_exactly_as_the_constructor_checks_them(optimizer_cls, name, value):
    """Loading says, word for word, what the constructor says of the same value, and sets nothing."""
    base = {"lr": 0.1, "momentum": 0.5} if optimizer_cls is optim.SGD else {"lr": 0.1}
    with pytest.raises(ValueError) as refused:
        optimizer_cls(nn.Linear(3, 2).parameters(), **{**base, name: value})
    rule = str(refused.value).removeprefix(f"{optimizer_cls.__name__}: ")

    opt = _trained(optimizer_cls, **base)
    before = _optimizer_snapshot(opt)
    state = opt.state_dict()
    state["hyperparameters"] = {**state["hyperparameters"], name: value}
    with pytest.raises(ValueError, match=re.escape(f"{optimizer_cls.__name__}.load_state_dict: {rule}")):
        opt.load_state_dict(state)
    assert _optimizer_snapshot(opt) == before


@pytest.mark.parametrize("change, message", [
    ({"zero_grad": 1}, r"unknown hyperparameters \['zero_grad'\]"),
    ({"eps": None}, r"missing hyperparameters \['eps'\]"),
])
def test_an_optimiser_refuses_unknown_or_missing_hyperparameters(change, message):
    """Not even a key that names a method (``zero_grad``) gets set on the optimiser."""
    opt = _trained(optim.Adam)
    state = opt.state_dict()
    hyperparameters = {**state["hyperparameters"], **change}
    state["hyperparameters"] = {k: v for k, v in hyperparameters.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    assert callable(opt.zero_grad) and opt.eps == 1e-8


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["1"].update(exp_avg=np.zeros(3, np.float32)), r"exp_avg of parameter 1 has shape \(3,\)"),
    (lambda s: s["1"].update(step=-1), r"step of parameter 1 must be a count"),
    (lambda s: s["1"].pop("exp_avg_sq"), r"parameter 1's state has \['exp_avg', 'step'\]"),
    (lambda s: s.update({"-1": s["0"]}), r"state for parameter '-1'"),
    (lambda s: s.update({"2": s["0"]}), r"state for parameter '2'"),
])
def test_a_failed_optimiser_load_changes_nothing(edit, message):
    """Per-parameter state is checked (names, shapes, counts) before any of it, or the learning rate, is set."""
    opt = _trained(optim.Adam, lr=1e-2)
    before = _optimizer_snapshot(opt)
    state = opt.state_dict()
    state = {"type": "Adam", "hyperparameters": {**state["hyperparameters"], "lr": 0.5},
             "state": {k: dict(v) for k, v in state["state"].items()}}
    edit(state["state"])
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    assert _optimizer_snapshot(opt) == before


# ------------------------------------------------------------------------------------- checkpoints


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _entries(path) -> dict:
    """The raw bytes of every entry of a zip, by name."""
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_zip(path, entries: dict, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, payload in entries.items():
            archive.writestr(name, payload)


def _load_measuring(path):
    """(what ``load`` returned or raised, the peak bytes Python allocated meanwhile)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        try:
            outcome = sg.load(path)
        except Exception as err:  # noqa: BLE001 - the callers check which kind it was
            outcome = err
        return outcome, tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()


def _allowance(file_size: int) -> int:
    """The most a load may allocate: 4 times the file's size, plus 128 KiB that do not grow with it (opening
    a zip and parsing JSON; and zipfile reads an entry's name by its declared 16-bit length, up to 64 KiB,
    before it can see that the name is wrong)."""
    return 4 * file_size + 128 * 1024


_BIG = 2_000_000  # float32 zeros: 8 MB that deflate to about 8 KB


@pytest.mark.parametrize("metadata_agrees", [False, True], ids=["header-lies", "metadata-agrees"])
def test_a_deflated_entry_is_measured_before_it_is_inflated(tmp_path, metadata_agrees):
    """A small file that would inflate into a large array is refused before it allocates that array."""
    path = tmp_path / "bomb.npz"
    if metadata_agrees:  # a whole checkpoint, recompressed: its metadata declares the large array
        sg.save({"w": np.zeros(_BIG, np.float32)}, path)
        entries = _entries(path)
    else:  # a four-element checkpoint whose entry's own header claims two million elements
        sg.save({"w": np.zeros(4, np.float32)}, path)
        entries = {**_entries(path), "a0.npy": _npy(np.zeros(_BIG, np.float32))}
    _write_zip(path, entries, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000

    outcome, peak = _load_measuring(path)
    assert isinstance(outcome, sg.CheckpointError), outcome
    assert "bomb.npz" in str(outcome) and "'a0'" in str(outcome)
    size = path.stat().st_size
    assert peak < _allowance(size), f"load allocated {peak} bytes for a {size}-byte file"


def test_overlapping_entries_cannot_add_up_beyond_the_file(tmp_path):
    """Entries that share bytes (an "overlapping" zip bomb: a1's entry lies inside a0's data) are refused:
    what the entries declare together may not exceed the file's size, as it never does in a saved file."""
    inner = _npy(np.zeros(1000, np.float32))
    alone = io.BytesIO()
    _write_zip(alone, {"a1.npy": inner})
    a1_entry = alone.getvalue()[:30 + len("a1.npy") + len(inner)]  # a1's local header and data
    path = tmp_path / "overlap.npz"
    sg.save({"outer": np.frombuffer(a1_entry, np.uint8), "inner": np.zeros(1000, np.float32)}, path)
    entries = _entries(path)
    _write_zip(path, {name: entries[name] for name in ("a0.npy", "metadata.npy", "a1.npy")})
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        own_copy = archive.getinfo("a1.npy").header_offset
    data = bytearray(data[:own_copy] + data[data.index(b"PK\x01\x02"):])  # drop a1's own copy ...
    directory_entry = data.index(b"a1.npy", own_copy) - 46
    data[directory_entry + 42:directory_entry + 46] = data.index(a1_entry).to_bytes(4, "little")  # ... use a0's
    data[-6:-2] = own_copy.to_bytes(4, "little")  # where the central directory now starts
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:  # a zip that zipfile reads without complaint
        assert archive.read("a1.npy") == inner and archive.testzip() is None

    with pytest.raises(sg.CheckpointError, match="overlap.npz"):
        sg.load(path)


def test_deeply_nested_metadata_is_a_checkpoint_error(tmp_path):
    """Not the RecursionError of the JSON parser."""
    path = tmp_path / "deep.npz"
    text = json.dumps({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "arrays": {}, "state": 0})
    text = text.replace('"state": 0', '"state": ' + "[" * 100_000 + "]" * 100_000)
    _write_zip(path, {"metadata.npy": _npy(np.frombuffer(text.encode("utf-8"), dtype=np.uint8))})
    with pytest.raises(sg.CheckpointError, match="deep.npz"):
        sg.load(path)


@pytest.mark.parametrize("field, value", [
    (6, 255),    # version needed to extract: 25.5   (NotImplementedError)
    (8, 0x01),   # flag: encrypted                    (RuntimeError)
    (8, 0x20),   # flag: compressed patched data      (NotImplementedError)
    (10, 99),    # compression method 99              (NotImplementedError)
    (10, 12),    # compression method bzip2 on stored bytes
    (10, 14),    # compression method LZMA on stored bytes
], ids=["version", "encrypted", "patched", "method-99", "bzip2", "lzma"])
def test_a_damaged_zip_directory_is_a_checkpoint_error(tmp_path, field, value):
    """What zipfile raises for an odd directory entry (NotImplementedError, RuntimeError...) is CheckpointError."""
    path = tmp_path / "c.npz"
    sg.save({"w": np.arange(3.0)}, path)
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the first entry of the central directory
    data[entry + field:entry + field + 2] = value.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(sg.CheckpointError, match="c.npz"):
        sg.load(path)


def test_every_byte_flip_either_loads_the_same_data_or_raises_checkpoint_error(tmp_path):
    """Every single-byte change (low bit, all bits) and every truncation of a small checkpoint: the same data
    or CheckpointError, nothing else, and never more memory than a few times the file's size."""
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "epoch": 3, "pair": (1, "a")}
    path = tmp_path / "fuzzed.npz"
    sg.save(state, path)
    data = path.read_bytes()
    assert len(data) < 1000  # small enough that the whole fuzz takes seconds
    _assert_same(state, sg.load(path))  # the control: the intact file loads

    def check(what):
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        try:
            _assert_same(state, sg.load(path), where=what)
        except sg.CheckpointError as err:
            assert "fuzzed.npz" in str(err), f"{what}: {err}"
        except Exception as err:  # noqa: BLE001 - any other exception is the failure being tested for
            pytest.fail(f"{what}: {type(err).__name__}: {err}")
        peak = tracemalloc.get_traced_memory()[1] - baseline
        assert peak < _allowance(len(data)), f"{what}: load allocated {peak} bytes for a {len(data)}-byte file"

    tracemalloc.start()
    # The file is changed in place: rewriting it whole thousands of times is slow on some file systems.
    with open(path, "r+b") as file:
        try:
            for mask in (0x01, 0xFF):
                for i in range(len(data)):
                    file.seek(i)
                    file.write(bytes([data[i] ^ mask]))
                    file.flush()
                    check(f"byte {i} ^ {mask:#04x}")
                    file.seek(i)
                    file.write(data[i:i + 1])
            for n in reversed(range(len(data))):
                file.truncate(n)
                check(f"first {n} bytes")
        finally:
            tracemalloc.stop()


# ------------------------------------------------------------------------------------------ MNIST


@pytest.fixture
def fresh_hash_cache():
    """Forget which files were hashed, before and after, so that each test sees its own hashing."""
    mnist._sha256_cached.cache_clear()
    yield
    mnist._sha256_cached.cache_clear()


def test_the_embedded_mnist_file_is_checked_against_its_sha256(tmp_path, monkeypatch, fresh_hash_cache):
    """A substituted file, valid as an .npz, is refused with the file, the expected and the actual hash."""
    substitute = tmp_path / "mnist_5k.npz"
    labels = np.arange(10).repeat(4)
    np.savez(substitute, x_train=np.zeros((40, 28, 28), np.uint8), y_train=labels,
             x_test=np.zeros((40, 28, 28), np.uint8), y_test=labels)
    monkeypatch.setattr(mnist, "EMBEDDED_PATH", substitute)
    actual = sg.data.download.sha256_of(substitute)
    with pytest.raises(ChecksumError) as refused:
        load_mnist()
    for part in (str(substitute), mnist.EMBEDDED_SHA256, actual):
        assert part in str(refused.value)


def test_the_embedded_mnist_file_is_hashed_once_per_process(tmp_path, monkeypatch, fresh_hash_cache):
    """Checking costs one read of the file per process, not one per load; a replaced file is hashed again."""
    hashed = []
    monkeypatch.setattr(mnist, "sha256_of", lambda path: hashed.append(path) or sg.data.download.sha256_of(path))
    copy = tmp_path / "mnist_5k.npz"
    shutil.copyfile(mnist.EMBEDDED_PATH, copy)
    monkeypatch.setattr(mnist, "EMBEDDED_PATH", copy)
    load_mnist(split="train")
    load_mnist(split="test")
    assert len(hashed) == 1
    copy.write_bytes(copy.read_bytes() + b"\0")  # changed (its size and time), so hashed again
    with pytest.raises(ChecksumError):
        load_mnist()
    assert len(hashed) == 2
