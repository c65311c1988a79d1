"""IDX parsing: files built byte by byte here (not only by our writer), gzipped and plain, and broken ones."""

import gzip
import struct

import numpy as np
import pytest

from scratchgen.data import IDXError, read_idx, write_idx
from scratchgen.data.idx import IDX_DTYPES


def idx_bytes(code: int, shape, payload: bytes) -> bytes:
    """An IDX file written from the specification: 0, 0, type code, ndim, big-endian sizes, data."""
    return struct.pack(">BBBB", 0, 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape) + payload


def test_reads_hand_built_uint8_images(tmp_path):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8) * 10
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_bytes(0x08, (2, 3, 4), pixels.tobytes()))
    array = read_idx(path)
    assert array.dtype == np.uint8 and array.shape == (2, 3, 4)
    np.testing.assert_array_equal(array, pixels.reshape(2, 3, 4))


def test_reads_hand_built_big_endian_int32_and_float32_gzipped(tmp_path):
    ints = [1, -2, 70000, -(2**31)]
    path = tmp_path / "ints.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x0C, (4,), struct.pack(">4i", *ints))))
    array = read_idx(path)
    assert array.dtype == np.int32 and array.dtype.isnative
    np.testing.assert_array_equal(array, ints)

    floats = [0.5, -1.25, 3.0e10, 1e-3, 7.0, 8.0]
    path = tmp_path / "floats.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x0D, (2, 3), struct.pack(">6f", *floats))))
    np.testing.assert_array_equal(read_idx(path), np.asarray(floats, dtype=np.float32).reshape(2, 3))


def test_gzip_is_recognised_by_content_not_by_name(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"  # gzipped, without the .gz
    path.write_bytes(gzip.compress(idx_bytes(0x08, (3,), bytes([7, 0, 9]))))
    np.testing.assert_array_equal(read_idx(path), [7, 0, 9])


@pytest.mark.parametrize("dtype", [np.dtype(d.str).newbyteorder("=") for d in IDX_DTYPES.values()])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_write_then_read_round_trip(tmp_path, dtype, name, rng):
    array = (rng.standard_normal((3, 2, 5)) * 50).astype(dtype)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, array)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")


def test_writer_follows_the_specification_byte_for_byte(tmp_path):
    array = np.array([[1, 2], [3, 4]], dtype=np.int16)
    write_idx(tmp_path / "a", array)
    assert (tmp_path / "a").read_bytes() == idx_bytes(0x0B, (2, 2), struct.pack(">4h", 1, 2, 3, 4))


def test_writer_refuses_a_type_without_code(tmp_path):
    with pytest.raises(IDXError, match="float16"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.float16))


@pytest.mark.parametrize("raw, message", [
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x05", "bad magic number 0x01000801"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x05", "unknown type code 0x07"),
    (b"\x00\x00", "too short"),
    (b"\x00\x00\x08\x03" + struct.pack(">I", 60000), "truncated header"),
    (idx_bytes(0x08, (4, 2), bytes(7)), "truncated data"),
    (idx_bytes(0x0C, (2,), bytes(9)), "1 extra"),
])
def test_broken_files_raise_idx_errors_naming_the_file(tmp_path, raw, message):
    path = tmp_path / "broken-idx"
    path.write_bytes(raw)
    with pytest.raises(IDXError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_a_gzip_stream_cut_short_is_an_idx_error(tmp_path):
    compressed = gzip.compress(idx_bytes(0x08, (100,), bytes(range(100))))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(IDXError, match="cut.gz"):
        read_idx(path)
