"""Checkpoints: save and load a run's state (model, optimiser, random generator, epoch) as one ``.npz``.

A checkpoint is a nested dict whose leaves are arrays and plain values::

    scratchgen.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                     "rng": scratchgen.backend.get_rng_state(), "epoch": 3}, "run/checkpoint.npz")
    state = scratchgen.load("run/checkpoint.npz")
    model.load_state_dict(state["model"])

On disk it is an ordinary NumPy ``.npz`` (a zip of ``.npy`` files) that ``numpy.load`` can open:

* every array is an entry named ``a0``, ``a1``, ... (host NumPy arrays; CuPy arrays are copied back);
* the entry ``metadata`` holds, as UTF-8 bytes, one JSON document with the format's name and version,
  the dtype, shape and SHA-256 of every array, and the *tree*: the dict itself with each array
  replaced by ``{"__array__": "a3"}`` and each tuple by ``{"__tuple__": [...]}``. Keeping the structure
  in JSON rather than in the entry names means any string works as a key (a model's keys have dots,
  an optimiser's are "0", "1", ...), and Python ints of any size survive (the generator's state has
  128-bit integers).

Three promises, each tested:

* **Atomic writes.** :func:`atomic_write` writes a temporary file beside the target, flushes it to the
  disk and renames it over the target in one step, so a crash leaves the old checkpoint or the new
  one, never half of one. Pictures and ``metrics.json`` are written the same way.
* **No pickles.** ``numpy.load(..., allow_pickle=False)`` refuses an object array before anything is
  unpickled: a checkpoint can never run code when it is loaded.
* **Damage is an error, not garbage.** A truncated file, a bad zip, a changed array (caught by the zip's
  CRC or, after a careful edit, by the SHA-256) or a missing entry raises :class:`CheckpointError`
  naming the file and what is wrong. The hashes detect accidents and edits; they are not a signature.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
import zipfile
import zlib

import numpy

from scratchgen import backend
from scratchgen.tensor import Tensor

__all__ = ["save", "load", "atomic_write", "CheckpointError", "FORMAT", "VERSION"]

FORMAT = "scratchgen-checkpoint"
VERSION = 1
_METADATA = "metadata"
_ARRAY, _TUPLE = "__array__", "__tuple__"  # the tags that stand for arrays and tuples in the JSON tree


class CheckpointError(ValueError):
    """Raised when a state cannot be saved as a checkpoint, or a file is not an intact checkpoint."""


# ----------------------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; when the block ends without error it replaces ``path``.

    The data is flushed and fsync'ed before ``os.replace`` renames the file, which is atomic on POSIX
    and Windows: readers see the old file or the new one, never a partial one. On an error the
    temporary file is removed and the old file is left as it was. Missing parent folders are made.

    Args:
        path: the file to write.
        mode: "wb" for bytes (the default) or "w" for UTF-8 text.

    Yields:
        The open temporary file.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open with mode 0o666 respects the umask, so the final file gets the usual permissions.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable; only POSIX can (and needs to) open a directory for this."""
    if os.name == "posix":
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save(state: dict, path) -> str:
    """Write ``state`` to ``path`` as a checkpoint, atomically.

    Args:
        state: a dict with string keys whose values are dicts of the same kind, lists, tuples, arrays
            (NumPy or CuPy, of any non-object dtype), NumPy scalars, ints, floats, strings, bools or None.
        path: the file to write, conventionally ending in ``.npz`` (no suffix is added).

    Returns:
        ``path`` as a string.

    Raises:
        CheckpointError: a value of another type (naming where it is in ``state``), a non-string key,
            or an object array.
    """
    from scratchgen import __version__  # here, not at the top: the package imports this module

    arrays = {}
    tree = _encode(state, arrays, "state")
    metadata = {
        "format": FORMAT, "version": VERSION, "scratchgen_version": __version__,
        "arrays": {name: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _sha256(a)}
                   for name, a in arrays.items()},
        "state": tree,
    }
    metadata_bytes = numpy.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=numpy.uint8)
    # A file object, not a name, so that numpy does not append ".npz" to the temporary file's name.
    with atomic_write(path) as file:
        numpy.savez(file, **arrays, **{_METADATA: metadata_bytes})
    return os.fspath(path)


def _encode(value, arrays: dict, where: str):
    """The JSON tree for ``value``, moving each array into ``arrays`` under a new name."""
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CheckpointError(f"save: key {key!r} in {where} is a {type(key).__name__}; keys must be strings")
            if key in (_ARRAY, _TUPLE):
                raise CheckpointError(f"save: key {key!r} in {where} is reserved by the checkpoint format")
        return {key: _encode(item, arrays, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, list):
        return [_encode(item, arrays, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(item, arrays, f"{where}[{i}]") for i, item in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, numpy.ndarray) or backend.is_array(value) or isinstance(value, numpy.generic):
        array = numpy.asarray(backend.to_numpy(value))
        if array.dtype.hasobject:
            raise CheckpointError(f"save: {where} is an array of Python objects, which only pickle could store")
        name = f"a{len(arrays)}"
        arrays[name] = array
        return {_ARRAY: name, "scalar": True} if isinstance(value, numpy.generic) else {_ARRAY: name}
    hint = ": save tensor.data, or a module's state_dict()" if isinstance(value, Tensor) else ""
    raise CheckpointError(f"save: {where} is a {type(value).__name__}, which a checkpoint cannot hold{hint}")


def _sha256(array: numpy.ndarray) -> str:
    return hashlib.sha256(numpy.ascontiguousarray(array).tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------- reading


def load(path) -> dict:
    """Read a checkpoint written by :func:`save`; arrays come back as host NumPy arrays.

    Nothing is ever unpickled. Tuples come back as tuples, NumPy scalars as NumPy scalars.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is truncated or not a zip, holds a pickled object, lacks or adds an
            entry, or an array's dtype, shape or SHA-256 differs from the one recorded when it was saved.
    """
    path = os.fspath(path)
    try:
        npz = numpy.load(path, allow_pickle=False)
        if not isinstance(npz, numpy.lib.npyio.NpzFile):
            raise CheckpointError(f"load: {path} is a single .npy array, not a checkpoint (.npz)")
        with npz:
            metadata = _read_metadata(npz, path)
            arrays = {name: _read_array(npz, name, expected, path) for name, expected in metadata["arrays"].items()}
            unexpected = sorted(set(npz.files) - set(arrays) - {_METADATA})
    except (CheckpointError, FileNotFoundError):
        raise
    except ValueError as err:
        if "pickle" in str(err):
            raise CheckpointError(f"load: {path} holds pickled Python objects, which a checkpoint never contains; "
                                  f"refused without unpickling (loading a pickle can run arbitrary code)") from err
        raise CheckpointError(f"load: {path} is not an intact checkpoint: {err}") from err
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, TypeError) as err:
        raise CheckpointError(f"load: {path} is not an intact checkpoint (truncated or corrupted?): "
                              f"{type(err).__name__}: {err}") from err
    if unexpected:
        raise CheckpointError(f"load: {path} has entries {unexpected} that its metadata does not list")
    return _decode(metadata["state"], arrays, path)


def _read_metadata(npz, path: str) -> dict:
    if _METADATA not in npz.files:
        raise CheckpointError(f"load: {path} has no '{_METADATA}' entry; it is an .npz but not a scratchgen checkpoint")
    try:
        metadata = json.loads(npz[_METADATA].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"load: the metadata of {path} is not valid JSON: {err}") from err
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"load: {path} is not a scratchgen checkpoint (its metadata names no format {FORMAT!r})")
    if metadata.get("version") != VERSION:
        raise CheckpointError(f"load: {path} is checkpoint format version {metadata.get('version')}; "
                              f"this scratchgen reads version {VERSION}")
    return metadata


def _read_array(npz, name: str, expected: dict, path: str) -> numpy.ndarray:
    if name not in npz.files:
        raise CheckpointError(f"load: {path} lacks the array entry {name!r} that its metadata lists")
    array = npz[name]
    found = {"dtype": array.dtype.str, "shape": list(array.shape)}
    if found != {"dtype": expected["dtype"], "shape": expected["shape"]}:
        raise CheckpointError(f"load: array {name!r} of {path} is {found}, but was saved as "
                              f"dtype {expected['dtype']}, shape {expected['shape']}")
    if _sha256(array) != expected["sha256"]:
        raise CheckpointError(f"load: array {name!r} of {path} has changed since it was saved (SHA-256 differs)")
    return array


def _decode(node, arrays: dict, path: str):
    """Rebuild the saved value from its JSON tree and the arrays."""
    if isinstance(node, list):
        return [_decode(item, arrays, path) for item in node]
    if not isinstance(node, dict):
        return node
    if _ARRAY in node:
        if node[_ARRAY] not in arrays:
            raise CheckpointError(f"load: the metadata of {path} refers to an array {node[_ARRAY]!r} it does not list")
        array = arrays[node[_ARRAY]]
        return array[()] if node.get("scalar") else array
    if _TUPLE in node:
        return tuple(_decode(item, arrays, path) for item in node[_TUPLE])
    return {key: _decode(item, arrays, path) for key, item in node.items()}
