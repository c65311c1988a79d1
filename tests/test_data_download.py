"""The download cache, against a small HTTP server on 127.0.0.1 that serves fake IDX files.

The server runs in a daemon thread on an ephemeral port, answers only loopback, and is shut down after
each test; every client call has a short timeout. No test touches the real network.
"""

import dataclasses
import gzip
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

from scratchgen.data import ChecksumError, DownloadError, default_cache_dir, fetch, load_mnist, read_idx
from scratchgen.data import download

TIMEOUT = 5.0


def idx_gz(array) -> bytes:
    """The bytes of ``array`` as a gzipped IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes(), mtime=0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeServer:
    """Serves ``files`` (name -> bytes) under ``/``; names in ``cut_short`` announce more than they send."""

    def __init__(self):
        self.files, self.cut_short, self.no_length, self.requests = {}, set(), set(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = TIMEOUT  # a stuck client cannot hold the server thread for long

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                self.send_response(200)
                if name in server.cut_short:  # announce the whole file, send half, hang up
                    self.send_header("Content-Length", str(len(body)))
                    body = body[: len(body) // 2]
                elif name not in server.no_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.stop()


@pytest.fixture
def fake_mnist(server, rng):
    """Four small fake MNIST files on the server, and the table of their checksums."""
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 6).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3).astype(np.uint8),
    }
    server.files = {name: idx_gz(a) for name, a in arrays.items()}
    table = {name: (sha256(data), len(data)) for name, data in server.files.items()}
    return arrays, table


def closed_port_url() -> str:
    """A loopback URL where nothing listens (the port was just free), to play "offline"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_verifies_and_stores_the_files(tmp_path, server, fake_mnist):
    arrays, table = fake_mnist
    paths = fetch("mnist", cache_dir=tmp_path, base_url=server.url, files=table, timeout=TIMEOUT)
    assert sorted(server.requests) == sorted(table)
    for name, path in paths.items():
        assert path == tmp_path / "mnist" / name
        assert path.read_bytes() == server.files[name]
        np.testing.assert_array_equal(read_idx(path), arrays[name])
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(table)  # no temporary files left


def test_a_cache_hit_makes_no_request(tmp_path, server, fake_mnist):
    _, table = fake_mnist
    fetch("mnist", ["t10k-labels-idx1-ubyte.gz"], cache_dir=tmp_path, base_url=server.url, files=table)
    assert len(server.requests) == 1
    again = fetch("mnist", ["t10k-labels-idx1-ubyte.gz"], cache_dir=tmp_path, base_url=server.url, files=table)
    assert len(server.requests) == 1
    # ... and neither does it with no server at all
    offline = fetch("mnist", ["t10k-labels-idx1-ubyte.gz"], cache_dir=tmp_path, base_url=closed_port_url(),
                    files=table, timeout=TIMEOUT)
    assert offline == again


def test_a_download_with_the_wrong_checksum_is_refused_and_not_kept(tmp_path, server, fake_mnist):
    _, table = fake_mnist
    name = "train-labels-idx1-ubyte.gz"
    wrong = {name: ("0" * 64, table[name][1])}
    with pytest.raises(ChecksumError, match=f"{server.url}{name}.*SHA-256 {table[name][0]}, expected 0000"):
        fetch("mnist", cache_dir=tmp_path, base_url=server.url, files=wrong, timeout=TIMEOUT)
    assert list((tmp_path / "mnist").iterdir()) == []


@pytest.mark.parametrize("mode", ["cut_short", "no_length"])
def test_an_interrupted_transfer_leaves_no_partial_file(tmp_path, server, fake_mnist, mode):
    _, table = fake_mnist
    name = "train-images-idx3-ubyte.gz"
    getattr(server, mode).add(name)
    if mode == "cut_short":  # the server announced more than it sent: the transfer was interrupted
        error, message = DownloadError, f"{server.url}{name} was interrupted: received \\d+ of {table[name][1]}"
    else:  # without a length the client cannot tell; the size and checksum catch it
        server.files[name] = server.files[name][:1000]
        error, message = ChecksumError, f"gave 1000 bytes, expected {table[name][1]}"
    with pytest.raises(error, match=message):
        fetch("mnist", [name], cache_dir=tmp_path, base_url=server.url, files=table, timeout=TIMEOUT)
    assert list((tmp_path / "mnist").iterdir()) == []

    server.cut_short.clear()  # the next attempt starts afresh and succeeds
    server.no_length.clear()
    server.files[name] = idx_gz(fake_mnist[0][name])
    fetch("mnist", [name], cache_dir=tmp_path, base_url=server.url, files=table, timeout=TIMEOUT)
    assert download.sha256_of(tmp_path / "mnist" / name) == table[name][0]


def test_ctrl_c_during_a_download_leaves_no_partial_file(tmp_path, monkeypatch):
    def half_then_interrupt(url, out, timeout):
        out.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_stream", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        download.download_file("http://127.0.0.1:9/x.gz", tmp_path / "x.gz", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_offline_error_names_the_url_and_how_to_place_the_files(tmp_path, fake_mnist):
    _, table = fake_mnist
    url = closed_port_url()
    with pytest.raises(DownloadError) as info:
        fetch("mnist", ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"], cache_dir=tmp_path,
              base_url=url, files=table, timeout=TIMEOUT)
    message = str(info.value)
    assert f"could not download {url}t10k-images-idx3-ubyte.gz" in message
    assert "offline" in message and str(tmp_path / "mnist") in message
    for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        assert f"{name}  (SHA-256 {table[name][0]})" in message
    assert list((tmp_path / "mnist").iterdir()) == []


def test_missing_on_the_server_is_a_download_error(tmp_path, server):
    with pytest.raises(DownloadError, match="404"):
        fetch("mnist", cache_dir=tmp_path, base_url=server.url, files={"absent.gz": "0" * 64}, timeout=TIMEOUT)


def test_download_false_never_uses_the_network(tmp_path, server, fake_mnist):
    _, table = fake_mnist
    with pytest.raises(DownloadError, match="download=False") as info:
        fetch("mnist", cache_dir=tmp_path, base_url=server.url, files=table, download=False)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert server.requests == []


def test_a_damaged_cached_file_is_refused(tmp_path, fake_mnist):
    _, table = fake_mnist
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the file")
    with pytest.raises(ChecksumError, match="delete it"):
        fetch("mnist", ["t10k-labels-idx1-ubyte.gz"], cache_dir=tmp_path, files=table, download=False)


def test_environment_variables_choose_the_cache_and_the_server(tmp_path, server, fake_mnist, monkeypatch):
    _, table = fake_mnist
    monkeypatch.setenv("SCRATCHGEN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SCRATCHGEN_MNIST_URL", server.url)
    assert default_cache_dir() == tmp_path
    paths = fetch("mnist", ["t10k-labels-idx1-ubyte.gz"], files=table, timeout=TIMEOUT)
    assert server.requests == ["t10k-labels-idx1-ubyte.gz"]
    assert paths["t10k-labels-idx1-ubyte.gz"] == tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    monkeypatch.delenv("SCRATCHGEN_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "scratchgen"


def test_load_mnist_downloads_then_reads_from_the_cache(tmp_path, server, fake_mnist, monkeypatch):
    arrays, table = fake_mnist
    monkeypatch.setitem(download.DATASETS, "fashion_mnist",
                        dataclasses.replace(download.DATASETS["fashion_mnist"], base_url=server.url, files=table))
    for _ in range(2):
        images, labels = load_mnist("fashion_mnist", "test", cache_dir=tmp_path)
        np.testing.assert_array_equal(images, arrays["t10k-images-idx3-ubyte.gz"])
        np.testing.assert_array_equal(labels, arrays["t10k-labels-idx1-ubyte.gz"])
        assert labels.dtype == np.int64
    assert sorted(server.requests) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_the_published_file_table_is_well_formed():
    names = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    for remote in download.DATASETS.values():
        assert set(remote.files) == names and remote.base_url.endswith("/")
        for digest, size in remote.files.values():
            assert len(digest) == 64 and int(digest, 16) >= 0 and size > 0
    assert len({d for r in download.DATASETS.values() for d, _ in r.files.values()}) == 8  # no copy-paste slip
