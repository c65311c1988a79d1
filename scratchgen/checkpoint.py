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
* **No pickles.** An entry whose header declares an object array is refused before anything is
  unpickled (and NumPy reads the rest with ``allow_pickle=False``): a checkpoint can never run code
  when it is loaded.
* **Damage is an error, not garbage.** A truncated file, a bad zip, a changed array (caught by the
  zip's CRC or, after a careful edit, by the SHA-256), a missing entry or one that would inflate beyond
  the file's size raises :class:`CheckpointError` naming the file and what is wrong; nothing else
  escapes. Every entry's size is checked against the metadata and the zip directory before it is
  decompressed, so a crafted file cannot make ``load`` allocate more than a few times its own size.
  The hashes detect accidents and edits; they are not a signature.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
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

    Nothing is ever unpickled. Tuples come back as tuples, NumPy scalars as NumPy scalars. Every entry is
    measured before it is decompressed (see :func:`_check_sizes`), so a crafted file cannot make ``load``
    allocate much more memory than the file's own size.

    Raises:
        FileNotFoundError: no file at ``path`` (and other ``OSError`` from opening it, as they are).
        CheckpointError: the file is truncated or not a zip, holds a pickled object, lacks or adds an
            entry, declares more bytes than it holds, or an array's dtype, shape or SHA-256 differs from
            the one recorded when it was saved.
    """
    path = os.fspath(path)
    with open(path, "rb") as file:  # not finding or not being allowed to open the file is no damage to it
        try:
            return _read(file, path)
        except CheckpointError:
            raise
        except _DAMAGE as err:
            raise CheckpointError(f"load: {path} is not an intact checkpoint (truncated or corrupted?): "
                                  f"{type(err).__name__}: {err}") from err


_DAMAGE = (
    zipfile.BadZipFile, zlib.error, EOFError, OSError,  # a bad zip, a bad deflate stream, a truncated read
    NotImplementedError,  # a compression method, zip version or flag that zipfile does not handle
    RuntimeError,  # an entry flagged as encrypted; RecursionError (a subclass): JSON nested absurdly deep
    ValueError,  # numpy's .npy header parser, invalid UTF-8 or JSON, an impossible shape
)
"""What the zip, deflate, .npy and JSON readers raise for damaged input, each turned into CheckpointError."""


def _read(file, path: str) -> dict:
    """The saved state from an open checkpoint file, every part checked before it is used."""
    if file.read(len(numpy.lib.format.MAGIC_PREFIX)) == numpy.lib.format.MAGIC_PREFIX:
        raise CheckpointError(f"load: {path} is a single .npy array, not a checkpoint (.npz)")
    file.seek(0)
    with zipfile.ZipFile(file) as archive:
        _check_sizes(archive, os.fstat(file.fileno()).st_size, path)
        metadata = _read_metadata(archive, path)
        entries = archive.namelist()
        expected = {f"{name}.npy" for name in metadata["arrays"]} | {f"{_METADATA}.npy"}
        unexpected = sorted(name.removesuffix(".npy") for name in set(entries) - expected)
        if unexpected:
            raise CheckpointError(f"load: {path} has entries {unexpected} that its metadata does not list")
        if len(set(entries)) != len(entries):
            raise CheckpointError(f"load: {path} names an entry twice in its zip directory: {sorted(entries)}")
        arrays = {name: _read_array(archive, name, saved, path) for name, saved in metadata["arrays"].items()}
    return _decode(metadata["state"], arrays, path)


def _check_sizes(archive: zipfile.ZipFile, file_size: int, path: str) -> None:
    """Refuse entries that declare, together, more bytes than the file holds.

    :func:`save` stores entries uncompressed, so in a real checkpoint they always fit. A deflated entry
    can inflate kilobytes into gigabytes (a "zip bomb"), and entries can share bytes; either way the
    memory would be allocated before any later check could object. Each entry's header is later held
    to the size declared here (:func:`_read_npy`), so this caps what ``load`` can allocate.
    """
    total = 0
    for info in archive.infolist():
        total += info.file_size
        if total > file_size:
            raise CheckpointError(f"load: {path} is not an intact checkpoint: its entries up to "
                                  f"{info.filename.removesuffix('.npy')!r} declare {total} bytes, more than the "
                                  f"file's {file_size} (a checkpoint's entries are stored uncompressed, so they fit)")


def _read_npy(archive: zipfile.ZipFile, name: str, path: str, check_header) -> numpy.ndarray:
    """The array in entry ``<name>.npy``, read only once its header is known to be what was expected.

    Args:
        check_header: called with the header's dtype and shape; returns what is wrong with them, or None.
    """
    if f"{name}.npy" not in archive.namelist():
        raise CheckpointError(f"load: {path} lacks the array entry {name!r} that its metadata lists")
    info = archive.getinfo(f"{name}.npy")
    with archive.open(info) as entry:
        version = numpy.lib.format.read_magic(entry)
        if version not in _HEADER_READERS:
            raise CheckpointError(f"load: entry {name!r} of {path} is .npy format version {version}; "
                                  f"checkpoints use {sorted(_HEADER_READERS)}")
        shape, _, dtype = _HEADER_READERS[version](entry)
        if dtype.hasobject:
            raise CheckpointError(f"load: entry {name!r} of {path} holds pickled Python objects, which a "
                                  f"checkpoint never contains; refused without unpickling (loading a pickle can "
                                  f"run arbitrary code)")
        wrong = check_header(dtype, shape)
        if wrong:
            raise CheckpointError(f"load: array {name!r} of {path} {wrong}")
        needed = entry.tell() + math.prod(shape) * dtype.itemsize
        if needed != info.file_size:
            raise CheckpointError(f"load: entry {name!r} of {path} is {info.file_size} bytes in the zip directory, "
                                  f"but its header (dtype {dtype.str}, shape {list(shape)}) needs {needed}")
        entry.seek(0)
        return numpy.lib.format.read_array(entry, allow_pickle=False)


_HEADER_READERS = {(1, 0): numpy.lib.format.read_array_header_1_0, (2, 0): numpy.lib.format.read_array_header_2_0}


def _read_metadata(archive: zipfile.ZipFile, path: str) -> dict:
    if f"{_METADATA}.npy" not in archive.namelist():
        raise CheckpointError(f"load: {path} has no '{_METADATA}' entry; it is an .npz but not a scratchgen checkpoint")
    raw = _read_npy(archive, _METADATA, path, lambda dtype, shape: None if dtype == numpy.uint8 and len(shape) == 1
                    else f"is dtype {dtype.str}, shape {list(shape)}, not bytes")
    try:
        metadata = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"load: the metadata of {path} is not valid JSON: {err}") from err
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"load: {path} is not a scratchgen checkpoint (its metadata names no format {FORMAT!r})")
    if metadata.get("version") != VERSION:
        raise CheckpointError(f"load: {path} is checkpoint format version {metadata.get('version')}; "
                              f"this scratchgen reads version {VERSION}")
    arrays = metadata.get("arrays")
    if "state" not in metadata or not isinstance(arrays, dict) or not all(map(_is_array_record, arrays.values())):
        raise CheckpointError(f"load: the metadata of {path} lacks its 'state', or does not describe every array "
                              f"by a dtype, a shape and a SHA-256")
    return metadata


def _is_array_record(record) -> bool:
    """Whether ``record`` is a metadata entry as :func:`save` writes it: dtype, shape and SHA-256."""
    return (isinstance(record, dict) and isinstance(record.get("dtype"), str) and isinstance(record.get("sha256"), str)
            and isinstance(record.get("shape"), list)
            and all(type(n) is int and n >= 0 for n in record["shape"]))


def _read_array(archive: zipfile.ZipFile, name: str, saved: dict, path: str) -> numpy.ndarray:
    def check_header(dtype, shape):
        if dtype.str != saved["dtype"] or list(shape) != saved["shape"]:
            return (f"is dtype {dtype.str}, shape {list(shape)}, but was saved as dtype {saved['dtype']}, "
                    f"shape {saved['shape']}")
        return None

    array = _read_npy(archive, name, path, check_header)
    if _sha256(array) != saved["sha256"]:
        raise CheckpointError(f"load: array {name!r} of {path} has changed since it was saved (SHA-256 differs)")
    return array


def _decode(node, arrays: dict, path: str):
    """Rebuild the saved value from its JSON tree and the arrays."""
    if isinstance(node, list):
        return [_decode(item, arrays, path) for item in node]
    if not isinstance(node, dict):
        return node
    if _ARRAY in node:
        name = node[_ARRAY]
        if not isinstance(name, str) or name not in arrays:
            raise CheckpointError(f"load: the metadata of {path} refers to an array {name!r} it does not list")
        return arrays[name][()] if node.get("scalar") else arrays[name]
    if _TUPLE in node:
        if not isinstance(node[_TUPLE], list):
            raise CheckpointError(f"load: the metadata of {path} has a tuple that is not a list: {node[_TUPLE]!r}")
        return tuple(_decode(item, arrays, path) for item in node[_TUPLE])
    return {key: _decode(item, arrays, path) for key, item in node.items()}
