"""Downloading dataset files once into a local cache, checked by SHA-256 and written atomically.

Full MNIST and Fashion-MNIST are too large to ship with the library (the embedded 5,000-digit subset
is not), so :func:`fetch` downloads their files on first use into a cache directory and reuses them
afterwards without touching the network. Three rules make the cache trustworthy:

* **Checked.** Every file is compared with the SHA-256 checksum in :data:`DATASETS`, after a download
  and on every later load, so a corrupted or substituted file is never parsed.
* **Atomic.** A download goes to a temporary file in the same directory; only after its checksum
  matches is it renamed (``os.replace``, atomic on one file system) to its final name. An interrupted
  download leaves no half-written file that a later run could mistake for a good one.
* **Explained.** When the network fails the error names the URL that failed and says which files to
  place by hand, in which directory, to work offline.

Where the cache lives, first match wins: the ``cache_dir`` argument; the environment variable
``SCRATCHGEN_DATA_DIR``; ``$XDG_CACHE_HOME/scratchgen``; ``~/.cache/scratchgen``. Each dataset has
its own subdirectory (``mnist/``, ``fashion_mnist/``). The server can be changed with the
``base_url`` argument or the dataset's environment variable (``SCRATCHGEN_MNIST_URL``,
``SCRATCHGEN_FASHION_MNIST_URL``), for a local mirror or for tests.

Checksums: the SHA-256 and sizes are those TensorFlow Datasets publishes for these same files
(``tensorflow_datasets/url_checksums/mnist.txt`` and ``fashion_mnist.txt``); the sizes match those on
Y. LeCun's MNIST page and in the Fashion-MNIST repository. torchvision lists MD5s for the same files
(MNIST ``train-images-idx3-ubyte.gz``: ``f68b3c2dcbeaaa9fbdd348bbdeb94873``) if you want a second check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

__all__ = ["fetch", "download_file", "sha256_of", "default_cache_dir", "dataset_dir", "RemoteDataset",
           "DATASETS", "DownloadError", "ChecksumError"]

_CHUNK = 1 << 20  # read and hash 1 MiB at a time, so a large file never sits in memory twice


@dataclasses.dataclass(frozen=True)
class RemoteDataset:
    """Where a dataset's files live and what they must hash to.

    Attributes:
        base_url: the directory URL; a file's URL is ``base_url + file name``.
        url_env_var: environment variable that, when set, replaces ``base_url``.
        files: file name -> (SHA-256 hex digest, size in bytes or None).
    """

    base_url: str
    url_env_var: str
    files: dict


DATASETS = {
    "mnist": RemoteDataset(
        base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        url_env_var="SCRATCHGEN_MNIST_URL",
        files={
            "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
            "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
            "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
            "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
        },
    ),
    "fashion_mnist": RemoteDataset(
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        url_env_var="SCRATCHGEN_FASHION_MNIST_URL",
        files={
            "train-images-idx3-ubyte.gz": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
            "train-labels-idx1-ubyte.gz": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
            "t10k-images-idx3-ubyte.gz": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
            "t10k-labels-idx1-ubyte.gz": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
        },
    ),
}
"""The downloadable datasets. Tests swap in their own entries (``monkeypatch.setitem``)."""


class DownloadError(OSError):
    """A file could not be downloaded (network failure, interrupted transfer) or is missing offline."""


class ChecksumError(ValueError):
    """A file's SHA-256 is not the expected one."""


def default_cache_dir() -> Path:
    """The cache root when no ``cache_dir`` is given: ``$SCRATCHGEN_DATA_DIR``, else the user's cache."""
    if os.environ.get("SCRATCHGEN_DATA_DIR"):
        return Path(os.environ["SCRATCHGEN_DATA_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "scratchgen"


def dataset_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The directory holding dataset ``name``'s files: ``<cache root>/<name>``."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / name


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, filenames=None, cache_dir=None, base_url: str | None = None, download: bool = True,
          files: dict | None = None, timeout: float = 60.0) -> dict:
    """Make sure the files of dataset ``name`` are in the cache, downloading the missing ones.

    Args:
        name: a key of :data:`DATASETS` ("mnist" or "fashion_mnist").
        filenames: which of its files to fetch; all of them by default.
        cache_dir: cache root (see the module docstring for the default).
        base_url: server directory to download from, instead of the table's or the environment's.
        download: if False, never use the network: a missing file is an error.
        files: file name -> SHA-256 (or (SHA-256, size)), replacing the table's list; for mirrors
            of other files and for tests.
        timeout: seconds to wait for the server on each connection or read.

    Returns:
        file name -> Path of the verified file in the cache.

    Raises:
        ValueError: unknown dataset or file name.
        DownloadError: a download failed, or a file is missing and ``download`` is False; the
            message lists the files to place by hand and where.
        ChecksumError: a cached or downloaded file has the wrong SHA-256.
    """
    if name not in DATASETS:
        raise ValueError(f"fetch: unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    remote = DATASETS[name]
    table = {f: (v, None) if isinstance(v, str) else tuple(v) for f, v in (files or remote.files).items()}
    filenames = list(table) if filenames is None else list(filenames)
    for filename in filenames:
        if filename not in table:
            raise ValueError(f"fetch: {name} has no file {filename!r}; its files are {sorted(table)}")
    base_url = base_url or os.environ.get(remote.url_env_var) or remote.base_url
    if not base_url.endswith("/"):
        base_url += "/"
    directory = dataset_dir(name, cache_dir)

    paths = {}
    for filename in filenames:
        sha256, size = table[filename]
        path = directory / filename
        if not path.exists():
            how_to = _manual_instructions(name, directory, table, base_url)
            if not download:
                raise DownloadError(f"fetch: {path} is missing and download=False.\n{how_to}")
            directory.mkdir(parents=True, exist_ok=True)
            try:
                download_file(base_url + filename, path, sha256, size=size, timeout=timeout)
            except DownloadError as err:
                raise DownloadError(f"{err}\n{how_to}") from err
        else:
            actual = sha256_of(path)
            if actual != sha256:
                raise ChecksumError(f"fetch: cached file {path} has SHA-256 {actual}, expected {sha256}. "
                                    f"It is damaged or a different file: delete it to download it again.")
        paths[filename] = path
    return paths


def download_file(url: str, path: str | os.PathLike, sha256: str, size: int | None = None,
                  timeout: float = 60.0) -> Path:
    """Download ``url`` to ``path`` atomically, keeping it only if its SHA-256 is ``sha256``.

    The bytes go to a temporary file beside ``path``; on any failure (network error, a transfer
    shorter than the server announced, a wrong checksum, Ctrl-C) the temporary file is deleted and
    ``path`` is left as it was.

    Raises:
        DownloadError: the server could not be reached or the transfer was cut short.
        ChecksumError: the downloaded bytes have another SHA-256 (or another size than ``size``).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            digest, received, announced = _stream(url, out, timeout)
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the rename makes them visible
        if announced is not None and received != announced:
            raise DownloadError(f"download of {url} was interrupted: received {received} of {announced} bytes")
        if size is not None and received != size:
            raise ChecksumError(f"download of {url} gave {received} bytes, expected {size}; "
                                f"the server holds a different file")
        if digest != sha256:
            raise ChecksumError(f"download of {url} has SHA-256 {digest}, expected {sha256}; "
                                f"the server holds a different or damaged file")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _stream(url: str, out, timeout: float):
    """Copy the body of ``url`` into ``out``; return (SHA-256, bytes received, announced length or None)."""
    request = urllib.request.Request(url, headers={"User-Agent": "scratchgen"})
    digest, received = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
    except (OSError, http.client.HTTPException, ValueError) as err:
        # OSError covers urllib's URLError (DNS, refused, HTTP 404) and timeouts or resets mid-transfer;
        # HTTPException a malformed or cut-off response; ValueError a malformed URL.
        raise DownloadError(f"could not download {url}: {type(err).__name__}: {err}") from err
    return digest.hexdigest(), received, int(length) if length is not None else None


def _manual_instructions(name: str, directory: Path, table: dict, base_url: str) -> str:
    """How to work offline: which files (all of the dataset's), with which checksums, go in which directory."""
    lines = [f"To use {name} offline, download these files elsewhere (from {base_url} or a mirror) and put "
             f"them, still gzipped and under these names, in {directory} :"]
    lines += [f"    {f}  (SHA-256 {sha256})" for f, (sha256, _) in table.items()]
    lines.append(f"(Or set SCRATCHGEN_DATA_DIR to a folder whose {name}/ subfolder holds them.) "
                 f"load_mnist('embedded') needs no network at all.")
    return "\n".join(lines)
