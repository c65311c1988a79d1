"""The strict backend: NumPy underneath, CuPy's manners at the boundary. A test instrument, not a product.

No machine that builds or tests scratchgen has a GPU, so code that would break on CuPy (``numpy.asarray``
on a device array, a NumPy array mixed into a device operation, a name NumPy has and CuPy lacks) passes
unnoticed on NumPy. ``SCRATCHGEN_BACKEND=strict``, or ``scratchgen.set_backend("strict")``, makes it fail
on any machine:

* A :class:`StrictArray` is not a ``numpy.ndarray``: it holds one and will not hand it over implicitly.
  ``numpy.asarray(a)``, ``numpy.array(a)`` and ``a.__array__()`` raise CuPy's TypeError; an operator
  between it and a NumPy array raises TypeError; ``a.get()`` is the way to the host, as on CuPy.
* :data:`module` (what ``backend.xp`` is while strict is active) has only the names CuPy has as well
  (recorded at the end of this file; tests/test_cupy_api.py checks them against the installed CuPy). Its
  functions take and return StrictArrays; only ``asarray``, ``array`` and ``asanyarray`` take NumPy arrays
  (the copy to the device). Its random generator has only ``cupy.random.Generator``'s methods.
* Stricter than CuPy in one place: a NumPy function or ufunc called on a device array (``numpy.exp(a)``)
  raises TypeError naming it. CuPy would quietly run it on the GPU, but code that reaches for ``numpy``
  on device data is one step from a host copy; scratchgen's ops write ``backend.xp.exp``.
* Every read that would wait for the GPU, ``get()``, ``item()``, ``tolist()``, ``tobytes()``, ``float()``,
  ``int()``, ``bool()`` and printing, adds one to :data:`host_reads`, so a test can count a training
  step's syncs (``backend.strict_host_reads()``).

Where CuPy is lenient, so is this: NumPy arrays as indices and as values assigned into a slice (CuPy copies
them to the device), NumPy and Python scalars as operands. CuPy arrays have no ``__index__`` (they cannot
index a list), so neither does a StrictArray.
"""

from __future__ import annotations

import operator

import numpy

__all__ = ["StrictArray", "module", "host_reads"]

host_reads = 0
"""How many times a value was read back to the host (see the module docstring); backend resets it."""

_IMPLICIT_CONVERSION = ("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")  # CuPy's own words
_TAKES_HOST_ARRAYS = {"asarray", "array", "asanyarray"}  # the functions that copy host data to the device
_SCALARS = (int, float, complex, bool, numpy.generic)


def _count_host_read() -> None:
    global host_reads
    host_reads += 1


# Every operation of a strict array goes through _unwrap and _wrap, so they test the common cases first, by
# exact type (a StrictArray, a number, a NumPy array), before the general ones; the checks are the same.
_AS_THEY_ARE = frozenset({int, float, bool, complex, str, slice, type(None), type(Ellipsis)})


def _unwrap(value, where: str, host_ok: bool = False):
    """The NumPy array inside each StrictArray in ``value`` (through lists, tuples and dicts), to hand to NumPy.

    Raises:
        TypeError: a NumPy array where a device array belongs (unless ``host_ok``), naming ``where``.
    """
    kind = type(value)
    if kind is StrictArray:
        return value._array
    if kind in _AS_THEY_ARE:
        return value
    if kind is tuple:
        for v in value:
            if type(v) not in _AS_THEY_ARE:
                return tuple([_unwrap(v, where, host_ok) for v in value])
        return value  # slices and numbers, an index most often: nothing inside to unwrap
    if kind is list:
        return [_unwrap(v, where, host_ok) for v in value]
    if isinstance(value, numpy.ndarray):
        if host_ok:
            return value
        raise TypeError(f"{where} got a NumPy (host) array of shape {value.shape} where the strict backend, "
                        "like CuPy, needs a device array; move it first with scratchgen.backend.asarray(...)")
    if isinstance(value, dict):
        return {key: _unwrap(v, where, host_ok) for key, v in value.items()}
    return value


def _wrap(value):
    """NumPy's results back on the device: arrays, and NumPy scalars as 0-d arrays (as CuPy returns them)."""
    kind = type(value)
    if kind is numpy.ndarray:
        return StrictArray(value)
    if kind is tuple or kind is list:
        return kind([_wrap(v) for v in value])
    if isinstance(value, (numpy.ndarray, numpy.generic)):
        return StrictArray(numpy.asarray(value))
    return value


def _refuse_numpy(name: str, arguments) -> TypeError:
    hosts = [a for a in arguments if isinstance(a, numpy.ndarray)]
    if hosts:
        return TypeError(f"numpy.{name}: a NumPy (host) array of shape {hosts[0].shape} met a device array "
                         "(strict backend); CuPy refuses to mix them: move it with scratchgen.backend.asarray(...)")
    return TypeError(f"numpy.{name} was called on a device array (strict backend): NumPy computes on the host. "
                     f"Write backend.xp.{name} (cupy.{name} on a GPU), or bring the data over with .get()")


_OPERANDS = (numpy.ndarray,) + _SCALARS  # what an operator takes (a NumPy array, to refuse it)


def _binary(ufunc, reflected: bool = False):
    """``self <op> other`` (or ``other <op> self``) computed by ``ufunc`` on the arrays inside."""
    where = f"the operator {ufunc.__name__}"

    def apply(self, other):
        if not isinstance(other, (StrictArray,) + _OPERANDS):
            return NotImplemented  # a Tensor, say: its reflected operator takes over
        other = _unwrap(other, where)
        result = ufunc(other, self._array) if reflected else ufunc(self._array, other)
        return _wrap(result)
    return apply


def _in_place(ufunc):
    """``self <op>= other``, written into the array inside."""
    where = f"the operator {ufunc.__name__}="

    def apply(self, other):
        ufunc(self._array, _unwrap(other, where), out=self._array)
        return self
    return apply


def _operators(ufunc) -> tuple:
    """``a <op> b``, ``b <op> a`` and ``a <op>= b`` for one ufunc."""
    return _binary(ufunc), _binary(ufunc, reflected=True), _in_place(ufunc)


class StrictArray:
    """A device array of the strict backend: a NumPy array inside, reached only by :meth:`get`.

    Attributes and methods are those ``cupy.ndarray`` shares with ``numpy.ndarray`` (forwarded to the array
    inside, results wrapped again; written onto the class below the names at the end of this file); the
    operators are listed one by one below.
    """

    __slots__ = ("_array",)
    __hash__ = None

    def __init__(self, array: numpy.ndarray):
        self._array = array

    # --- the boundary with the host
    def get(self) -> numpy.ndarray:
        """A NumPy copy on the host (``cupy.ndarray.get``); counted as a host read."""
        _count_host_read()
        return self._array.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT_CONVERSION)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        raise _refuse_numpy(name, inputs + tuple(kwargs.get("out", ())))

    def __array_function__(self, function, types, args, kwargs):
        raise _refuse_numpy(function.__name__, args)

    def _read(self, convert):
        _count_host_read()
        return convert(self._array)

    def __float__(self):
        return self._read(float)

    def __int__(self):
        return self._read(int)

    def __bool__(self):
        return self._read(bool)

    def __complex__(self):
        return self._read(complex)

    def __repr__(self):
        return self._read(repr)

    def __str__(self):
        return self._read(str)

    def __format__(self, spec):
        return self._read(lambda array: format(array, spec))

    # --- attributes and methods: CuPy's, run by NumPy on the array inside (see _forward_ndarray_names)
    def __getattr__(self, name):  # reached only for the names the class does not have
        raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} (the strict backend offers "
                             "only what CuPy's arrays have)")

    def __copy__(self):
        return StrictArray(self._array.copy())

    def __deepcopy__(self, memo):
        return StrictArray(self._array.copy())

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        return (_wrap(row) for row in self._array)

    def __getitem__(self, index):
        result = self._array[_unwrap(index, "indexing", host_ok=True)]
        return _wrap(result)

    def __setitem__(self, index, value):
        self._array[_unwrap(index, "indexing", host_ok=True)] = _unwrap(value, "assignment", host_ok=True)

    # --- operators
    __add__, __radd__, __iadd__ = _operators(numpy.add)
    __sub__, __rsub__, __isub__ = _operators(numpy.subtract)
    __mul__, __rmul__, __imul__ = _operators(numpy.multiply)
    __truediv__, __rtruediv__, __itruediv__ = _operators(numpy.true_divide)
    __floordiv__, __rfloordiv__, __ifloordiv__ = _operators(numpy.floor_divide)
    __mod__, __rmod__, __imod__ = _operators(numpy.remainder)
    __pow__, __rpow__, __ipow__ = _operators(numpy.power)
    __matmul__, __rmatmul__ = _operators(numpy.matmul)[:2]  # CuPy has no @=
    __and__, __rand__, __iand__ = _operators(numpy.bitwise_and)
    __or__, __ror__, __ior__ = _operators(numpy.bitwise_or)
    __xor__, __rxor__, __ixor__ = _operators(numpy.bitwise_xor)
    __lshift__, __rlshift__, __ilshift__ = _operators(numpy.left_shift)
    __rshift__, __rrshift__, __irshift__ = _operators(numpy.right_shift)
    __eq__, __ne__ = _binary(numpy.equal), _binary(numpy.not_equal)
    __lt__, __le__ = _binary(numpy.less), _binary(numpy.less_equal)
    __gt__, __ge__ = _binary(numpy.greater), _binary(numpy.greater_equal)

    def __neg__(self):
        return StrictArray(-self._array)

    def __pos__(self):
        return StrictArray(+self._array)

    def __abs__(self):
        return StrictArray(abs(self._array))

    def __invert__(self):
        return StrictArray(~self._array)


_HOST_READ_METHODS = {"item", "tolist", "tobytes"}
_AS_THEY_ARE_ATTRIBUTES = {"shape", "dtype", "ndim", "size", "itemsize", "nbytes", "strides"}  # never arrays


def _ndarray_method(name: str):
    """``StrictArray.<name>(...)``: ``numpy.ndarray.<name>`` on the array inside, arguments unwrapped (a NumPy
    array among them raises TypeError naming ``ndarray.<name>``), the result wrapped."""
    where = f"ndarray.{name}"

    def method(self, *args, **kwargs):
        if args:
            args = [_unwrap(v, where) for v in args]
        if kwargs:
            kwargs = {key: _unwrap(v, where) for key, v in kwargs.items()}
        result = getattr(self._array, name)(*args, **kwargs)  # the array inside may be a NumPy scalar
        return _wrap(result)
    method.__name__ = method.__qualname__ = name
    return method


def _host_read_method(name: str):
    """``item``, ``tolist``, ``tobytes``: NumPy's own, counted as a host read when reached."""
    def read(self):
        _count_host_read()
        return getattr(self._array, name)
    return property(read)


def _forward_ndarray_names(names) -> None:
    """Write CuPy's ndarray attributes onto StrictArray once, so that each use is a plain attribute lookup:
    methods as :func:`_ndarray_method`, the host reads as :func:`_host_read_method`, the attributes as
    properties (arrays among them, ``T``, ``real``, ..., wrapped)."""
    for name in names:
        if name in _HOST_READ_METHODS:
            setattr(StrictArray, name, _host_read_method(name))
        elif callable(getattr(numpy.ndarray, name)):
            setattr(StrictArray, name, _ndarray_method(name))
        elif name in _AS_THEY_ARE_ATTRIBUTES:
            setattr(StrictArray, name, property(operator.attrgetter(f"_array.{name}")))
        else:
            setattr(StrictArray, name, property(lambda self, _name=name: _wrap(getattr(self._array, _name))))


class _DeviceFunction:
    """A NumPy function, ufunc or method made to take and give StrictArrays; a ufunc's ``reduce``, ``at``,
    ... are wrapped in turn. ``name`` is for error messages."""

    __slots__ = ("name", "_function", "_host_ok")

    def __init__(self, name: str, function):
        self.name, self._function = name, function
        self._host_ok = name.rpartition(".")[2] in _TAKES_HOST_ARRAYS

    def __call__(self, *args, **kwargs):
        name, host_ok = self.name, self._host_ok
        if args:
            args = [_unwrap(v, name, host_ok) for v in args]
        if kwargs:
            kwargs = {key: _unwrap(v, name, host_ok) for key, v in kwargs.items()}
        result = self._function(*args, **kwargs)
        return _wrap(result)

    def __getattr__(self, attr):
        value = getattr(self._function, attr)
        return _DeviceFunction(f"{self.name}.{attr}", value) if callable(value) else value

    def __repr__(self):
        return f"<strict {self.name}>"


class _StrictGenerator:
    """``cupy.random.Generator``'s methods, drawn by a ``numpy.random.Generator``, returning StrictArrays."""

    def __init__(self, seed=None):
        self._generator = numpy.random.default_rng(seed)

    def __getattr__(self, name):
        if name not in _GENERATOR_NAMES:
            raise AttributeError(f"'cupy.random.Generator' object has no attribute {name!r}; CuPy's generator has "
                                 f"only {', '.join(sorted(_GENERATOR_NAMES))}")
        return _DeviceFunction(f"Generator.{name}", getattr(self._generator, name))


class _StrictModule:
    """A stand-in for ``cupy`` or one of its submodules: NumPy's module with CuPy's names only.

    Functions and ufuncs become :class:`_DeviceFunction`; types (dtypes, ``finfo``) and constants pass as
    they are, as CuPy re-exports NumPy's; ``ndarray`` is :class:`StrictArray`.
    """

    def __init__(self, name: str, numpy_module, names, own=None):
        self._name, self._numpy, self._names, self._own = name, numpy_module, names, own or {}

    def __getattr__(self, attr):
        if attr in self._own:
            return self._own[attr]
        if attr not in self._names:
            raise AttributeError(f"module '{self._name}' has no attribute {attr!r} (the strict backend offers "
                                 "only the names CuPy has too)")
        value = getattr(self._numpy, attr)
        if not isinstance(value, type) and callable(value):
            value = _DeviceFunction(f"{self._name}.{attr}", value)
        setattr(self, attr, value)  # found by plain lookup from now on
        return value

    def __repr__(self):
        return f"<strict stand-in for module '{self._name}'>"


# ------------------------------------------------------------------------------- CuPy's names
# The names CuPy 14.2.0 and NumPy 2.4 both have: the module, its submodules, the random Generator and the
# ndarray (public attributes; the operators are written out above). Recorded from the installed packages
# (`sorted(n for n in dir(cupy) if hasattr(numpy, n))`, and so on); tests/test_cupy_api.py checks them.

_CUPY_NAMES = frozenset("""
abs absolute acos acosh add all allclose amax amin angle any append apply_along_axis apply_over_axes
arange arccos arccosh arcsin arcsinh arctan arctan2 arctanh argmax argmin argpartition argsort argwhere
around array array2string array_equal array_equiv array_repr array_split array_str asanyarray asarray
asarray_chkfinite ascontiguousarray asfortranarray asin asinh astype atan atan2 atanh atleast_1d
atleast_2d atleast_3d average bartlett base_repr binary_repr bincount bitwise_and bitwise_count
bitwise_invert bitwise_left_shift bitwise_not bitwise_or bitwise_right_shift bitwise_xor blackman bool
bool_ broadcast broadcast_arrays broadcast_shapes broadcast_to byte c_ can_cast cbrt cdouble ceil choose
clip column_stack common_type complex128 complex64 complexfloating compress concat concatenate conj
conjugate convolve copy copysign copyto corrcoef correlate cos cosh count_nonzero cov cross csingle
cumprod cumsum cumulative_prod cumulative_sum deg2rad degrees delete diag diag_indices diag_indices_from
diagflat diagonal diff digitize divide divmod dot double dsplit dstack dtype e ediff1d einsum empty
empty_like equal euler_gamma exp exp2 expand_dims expm1 extract eye fabs fill_diagonal finfo fix
flatiter flatnonzero flip fliplr flipud float16 float32 float64 float_power floating floor floor_divide
fmax fmin fmod format_float_positional format_float_scientific frexp from_dlpack frombuffer fromfile
fromfunction fromiter fromstring full full_like gcd generic genfromtxt get_printoptions gradient greater
greater_equal half hamming hanning heaviside histogram histogram2d histogramdd hsplit hstack hypot i0
identity iinfo imag index_exp indices inexact inf inner int16 int32 int64 int8 int_ intc integer interp
intersect1d intp invert isclose iscomplex iscomplexobj isdtype isfinite isfortran isin isinf isnan
isneginf isposinf isreal isrealobj isscalar issubdtype iterable ix_ kaiser kron lcm ldexp left_shift
less less_equal lexsort linspace load loadtxt log log10 log1p log2 logaddexp logaddexp2 logical_and
logical_not logical_or logical_xor logspace long longlong mask_indices matmul matrix_transpose max
maximum may_share_memory mean median meshgrid mgrid min min_scalar_type minimum mintypecode mod modf
moveaxis multiply nan nan_to_num nanargmax nanargmin nancumprod nancumsum nanmax nanmean nanmedian
nanmin nanprod nanstd nansum nanvar ndarray ndim ndindex negative newaxis nextafter nonzero not_equal
number ogrid ones ones_like outer packbits pad partition percentile permute_dims pi piecewise place poly
poly1d polyadd polyfit polymul polysub polyval positive pow power printoptions prod promote_types ptp
put put_along_axis putmask quantile r_ rad2deg radians ravel ravel_multi_index real real_if_close
reciprocal remainder repeat require reshape resize result_type right_shift rint roll rollaxis roots
rot90 round row_stack s_ save savetxt savez savez_compressed searchsorted select set_printoptions
setdiff1d setxor1d shape shares_memory short show_config sign signbit signedinteger sin sinc single sinh
size sort sort_complex split sqrt square squeeze stack std subtract sum swapaxes take take_along_axis
tan tanh tensordot tile trace transpose trapezoid tri tril tril_indices tril_indices_from trim_zeros
triu triu_indices triu_indices_from true_divide trunc typename ubyte ufunc uint uint16 uint32 uint64
uint8 uintc uintp ulong ulonglong union1d unique unique_all unique_counts unique_inverse unique_values
unpackbits unravel_index unsignedinteger unwrap ushort vander var vdot vectorize vsplit vstack where
zeros zeros_like
""".split())
_LINALG_NAMES = frozenset("""
LinAlgError cholesky cond cross det eig eigh eigvals eigvalsh inv lstsq matmul matrix_power matrix_rank
matrix_transpose norm pinv qr slogdet solve svd tensorinv tensorsolve
""".split())
_FFT_NAMES = frozenset("""
fft fft2 fftfreq fftn fftshift hfft ifft ifft2 ifftn ifftshift ihfft irfft irfft2 irfftn rfft rfft2
rfftfreq rfftn
""".split())
_STRIDE_TRICKS_NAMES = frozenset({"as_strided", "sliding_window_view"})
_RANDOM_NAMES = frozenset("""
BitGenerator RandomState beta binomial bytes chisquare choice default_rng dirichlet exponential f gamma
geometric gumbel hypergeometric laplace logistic lognormal logseries multinomial multivariate_normal
negative_binomial noncentral_chisquare noncentral_f normal pareto permutation poisson power rand randint
randn random random_integers random_sample ranf rayleigh sample seed shuffle standard_cauchy
standard_exponential standard_gamma standard_normal standard_t triangular uniform vonmises wald weibull
zipf
""".split())
_GENERATOR_NAMES = frozenset("""
beta binomial chisquare dirichlet exponential f gamma geometric hypergeometric integers logseries
poisson power random standard_exponential standard_gamma standard_normal uniform
""".split())
_NDARRAY_NAMES = frozenset("""
T all any argmax argmin argpartition argsort astype base byteswap choose clip compress conj conjugate
copy cumprod cumsum data device diagonal dot dtype dump dumps fill flags flat flatten imag item itemsize
mT max mean min nbytes ndim nonzero partition prod put ravel real repeat reshape round searchsorted
shape size sort squeeze std strides sum swapaxes take tobytes tofile tolist trace transpose var view
""".split())


_forward_ndarray_names(_NDARRAY_NAMES)

module = _StrictModule("cupy", numpy, _CUPY_NAMES, own={
    "ndarray": StrictArray,
    "random": _StrictModule("cupy.random", numpy.random, _RANDOM_NAMES, own={"default_rng": _StrictGenerator}),
    "linalg": _StrictModule("cupy.linalg", numpy.linalg, _LINALG_NAMES),
    "fft": _StrictModule("cupy.fft", numpy.fft, _FFT_NAMES),
    "lib": _StrictModule("cupy.lib", numpy.lib, (), own={"stride_tricks": _StrictModule(
        "cupy.lib.stride_tricks", numpy.lib.stride_tricks, _STRIDE_TRICKS_NAMES)}),
})
"""The strict backend's array module: ``backend.xp`` while strict is active."""
