"""The IDX file format of MNIST and Fashion-MNIST, read and written by our own code.

An IDX file is a header followed by the raw array, all in big-endian byte order (most significant
byte first), as described on Y. LeCun's MNIST page (http://yann.lecun.com/exdb/mnist/):

=======  =================  =============================================================
offset   field              value
=======  =================  =============================================================
0        magic number       4 bytes: ``0x00 0x00 <dtype code> <number of dimensions>``
4        sizes              one 32-bit unsigned integer per dimension
4 + 4d   data               the elements, C order (last index fastest), big-endian
=======  =================  =============================================================

So ``train-images-idx3-ubyte`` starts with the magic number ``0x00000803`` (unsigned bytes, 3
dimensions), then 60000, 28, 28, then 60000 x 28 x 28 bytes of pixels. The published files are
gzipped; :func:`read_idx` recognises gzip by its first two bytes (``1f 8b``), not by the file name.

Every way a file can be broken (a wrong magic number, a header or body cut short, bytes left over)
raises :class:`IDXError` saying what was expected and what was found.
"""

from __future__ import annotations

import gzip
import os

import numpy

__all__ = ["read_idx", "parse_idx", "write_idx", "IDXError", "IDX_DTYPES"]

IDX_DTYPES = {
    0x08: numpy.dtype(">u1"),  # unsigned byte: MNIST pixels and labels
    0x09: numpy.dtype(">i1"),  # signed byte
    0x0B: numpy.dtype(">i2"),  # short
    0x0C: numpy.dtype(">i4"),  # int
    0x0D: numpy.dtype(">f4"),  # float
    0x0E: numpy.dtype(">f8"),  # double
}
"""The type codes of the format (third byte of the magic number) and the big-endian dtype of each."""

_GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """Raised when bytes are not a well-formed IDX file."""


def read_idx(path: str | os.PathLike) -> numpy.ndarray:
    """Read an IDX file, gzipped or plain, into a NumPy array.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz`` or its unzipped ``train-images-idx3-ubyte``.

    Returns:
        An array of the shape and type the header gives, in native byte order; for MNIST images
        ``(N, 28, 28)`` uint8, for labels ``(N,)`` uint8.

    Raises:
        IDXError: the file is not a well-formed IDX file (the message names the file).
    """
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
        return parse_idx(raw)
    except (IDXError, OSError, EOFError) as err:  # gzip reports a cut-off stream as EOFError
        raise IDXError(f"read_idx: {os.fspath(path)}: {err}") from err


def parse_idx(raw: bytes) -> numpy.ndarray:
    """Decode the bytes of an (already unzipped) IDX file; see the module docstring for the layout.

    Raises:
        IDXError: bad magic number, unknown type code, header or data shorter than the header
            promises, or bytes left over after the data.
    """
    if len(raw) < 4:
        raise IDXError(f"file too short for an IDX header: {len(raw)} bytes, expected at least 4")
    zero, code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00":
        raise IDXError(f"bad magic number 0x{raw[:4].hex()}: an IDX file starts with two zero bytes "
                       f"(MNIST images start 0x00000803, labels 0x00000801)")
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise IDXError(f"bad magic number 0x{raw[:4].hex()}: unknown type code 0x{code:02x}, expected one of {known}")

    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise IDXError(f"truncated header: {ndim} dimensions need {header_size} header bytes, file has {len(raw)}")
    shape = tuple(int(d) for d in numpy.frombuffer(raw, dtype=">u4", count=ndim, offset=4))

    dtype = IDX_DTYPES[code]
    expected = header_size + int(numpy.prod(shape, dtype=numpy.int64)) * dtype.itemsize
    if len(raw) < expected:
        raise IDXError(f"truncated data: shape {shape} of {dtype.name} needs {expected} bytes, file has {len(raw)}")
    if len(raw) > expected:
        raise IDXError(f"size mismatch: shape {shape} of {dtype.name} needs {expected} bytes, "
                       f"file has {len(raw)} ({len(raw) - expected} extra)")
    data = numpy.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    # A native-endian copy: frombuffer's array is read-only and big-endian, awkward for everything after.
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (the inverse of :func:`read_idx`).

    Args:
        path: where to write; gzipped when ``compress`` is True, or when it is None and the name
            ends in ``.gz``.
        array: any array of a type the format has (see :data:`IDX_DTYPES`), at most 255 dimensions.
        compress: force gzip on or off.

    Raises:
        IDXError: the dtype has no IDX type code.
    """
    array = numpy.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise IDXError(f"write_idx: dtype {array.dtype} has no IDX type code; use one of "
                       f"{sorted({d.name for d in IDX_DTYPES.values()})}")
    header = bytes([0, 0, codes[native], array.ndim]) + numpy.asarray(array.shape, dtype=">u4").tobytes()
    body = header + numpy.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    if compress if compress is not None else os.fspath(path).endswith(".gz"):
        body = gzip.compress(body)
    with open(path, "wb") as f:
        f.write(body)
