"""CuPy's API, checked without a GPU: every name scratchgen reaches through ``xp``, ``cupyx`` and the random
generator exists in the installed CuPy, and takes the arguments scratchgen passes.

The names are not listed by hand: an AST walk over scratchgen's source finds them, so a new ``xp.foo``
is checked the day it is written. It collects

* attribute chains on the array module: ``xp.<...>``, ``backend.xp.<...>``, ``_state.module.<...>`` and
  local names bound to one of them (``module = backend.xp if ... else numpy``), checked on ``cupy``;
* chains on ``cupyx``, checked on ``cupyx``;
* methods called on the random generator: ``rng().<name>``, ``backend.rng().<name>`` and local names
  bound to ``rng()``, checked on ``cupy.random.Generator``;

and, for each call, how many positional arguments and which keywords it passes, which must bind to CuPy's
signature (``inspect.signature``, or for CuPy's ufuncs the signature line their docstring starts with).
So ``rng().standard_normal(shape, dtype=float32)`` fails if CuPy's method has no ``dtype``.

CuPy installs and imports on a machine without CUDA (only device calls fail): ``pip install cupy-cuda12x``
is all it takes to run these checks. CI does not install it (a 100 MB wheel), and the checks that need it
skip there; the scan itself is tested without CuPy.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "scratchgen"

_ARRAY_MODULE_ROOTS = {"xp", "backend.xp", "_state.module", "cupy"}  # dotted expressions that are the module
_GENERATOR_FACTORIES = {"rng", "backend.rng"}  # calls that return the random generator


@dataclass
class Use:
    """One name scratchgen reaches: ``namespace`` ("cupy", "cupyx" or "Generator") and the dotted ``path``
    in it, with where it was seen and, for calls, the arguments passed (None when not checkable)."""

    namespace: str
    path: str
    where: list = field(default_factory=list)
    calls: set = field(default_factory=set)  # {(number of positional arguments, frozenset of keywords)}


def _dotted(node) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _kind_of(value, aliases: dict) -> str | None:
    """What an expression evaluates to: "cupy" (the array module), "Generator" or None."""
    if isinstance(value, ast.IfExp):  # module = backend.xp if on_device else numpy
        return _kind_of(value.body, aliases) or _kind_of(value.orelse, aliases)
    if isinstance(value, ast.Call) and _dotted(value.func) in _GENERATOR_FACTORIES:
        return "Generator"
    name = _dotted(value)
    if name in _ARRAY_MODULE_ROOTS:
        return "cupy"
    return aliases.get(name)


def _aliases_in(tree) -> dict:
    """Names bound anywhere in a file to the array module or the generator, including pairwise tuple
    assignments (``generator, data = backend.rng(), ...``). By name, not by scope: a name bound to the
    array module in one function and to something else in another would be checked as the array module
    in both, which errs on the side of checking more."""
    aliases = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs = [(target, node.value)]
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs = list(zip(target.elts, node.value.elts))
            for name, value in pairs:
                kind = _kind_of(value, aliases)
                if isinstance(name, ast.Name) and kind:
                    aliases[name.id] = kind
    return aliases


def _call_signature(call: ast.Call):
    """(positional count, keywords) of a call, or None when it spreads ``*args`` or ``**kwargs``."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None
    return len(call.args), frozenset(k.arg for k in call.keywords)


def scan(root: Path = SOURCE) -> dict:
    """Every name the source under ``root`` reaches on CuPy, as {(namespace, path): Use}."""
    uses = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        aliases = _aliases_in(tree)
        called = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            found = _use_at(node, aliases)
            if found is None:
                continue
            namespace, dotted = found
            use = uses.setdefault((namespace, dotted), Use(namespace, dotted))
            use.where.append(f"{path.relative_to(root.parent)}:{node.lineno}")
            if id(node) in called:
                use.calls.add(_call_signature(called[id(node)]))
    return uses


def _use_at(node, aliases: dict):
    """(namespace, path) if ``node`` is the outermost attribute of a chain on CuPy's API, else None."""
    if not isinstance(node, ast.Attribute):
        return None
    if isinstance(node.value, ast.Call):  # rng().standard_normal, backend.rng().random
        if _dotted(node.value.func) in _GENERATOR_FACTORIES:
            return "Generator", node.attr
        return None
    dotted = _dotted(node)
    if dotted is None:
        return None
    for root in sorted(_ARRAY_MODULE_ROOTS, key=len, reverse=True):
        if dotted.startswith(root + "."):
            return "cupy", dotted[len(root) + 1:]
    if dotted.startswith("cupyx."):
        return "cupyx", dotted[len("cupyx."):]
    head, _, rest = dotted.partition(".")
    if head in aliases and rest:
        return aliases[head], rest
    return None


def _outermost(uses: dict) -> dict:
    """Drop ``lib`` and ``lib.stride_tricks`` where ``lib.stride_tricks.as_strided`` is also reached."""
    paths = {key for key in uses}
    return {key: use for key, use in uses.items()
            if not any(other[0] == key[0] and other[1].startswith(key[1] + ".") and not use.calls
                       for other in paths)}


def _signature(obj):
    """CuPy's signature for ``obj``: inspect's, or the one its docstring's first line gives (ufuncs)."""
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        pass
    first = (getattr(obj, "__doc__", None) or "").strip().splitlines()[:1]
    if not first or "(" not in first[0]:
        return None
    text = first[0].replace("\\", "")
    text = text[text.index("("):text.rindex(")") + 1]
    text = re.sub(r"(?<=[(,])\s*[A-Za-z_][\w.]*\s+(?=[A-Za-z_])", "", text)  # Cython's "int device_id=-1"
    try:
        arguments = ast.parse(f"def f{text}: pass").body[0].args
    except SyntaxError:
        return None
    P = inspect.Parameter
    positional = [(a.arg, P.POSITIONAL_ONLY) for a in arguments.posonlyargs] + \
                 [(a.arg, P.POSITIONAL_OR_KEYWORD) for a in arguments.args]
    first_default = len(positional) - len(arguments.defaults)
    parameters = [P(name, kind, default=None if i >= first_default else P.empty)
                  for i, (name, kind) in enumerate(positional)]
    if arguments.vararg:
        parameters.append(P(arguments.vararg.arg, P.VAR_POSITIONAL))
    parameters += [P(a.arg, P.KEYWORD_ONLY, default=P.empty if d is None else None)
                   for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults)]
    if arguments.kwarg:
        parameters.append(P(arguments.kwarg.arg, P.VAR_KEYWORD))
    return inspect.Signature(parameters)


def problems(uses: dict, cupy, cupyx, unchecked: list | None = None) -> list[str]:
    """What the installed CuPy lacks, or refuses, of ``uses``: one line per problem, naming the use.

    A call to a function whose signature cannot be read (a compiled function without a signature line)
    is not a problem; its name goes into ``unchecked``, if given."""
    namespaces = {"cupy": cupy, "cupyx": cupyx, "Generator": cupy.random.Generator}
    found = []
    for (namespace, dotted), use in sorted(_outermost(uses).items()):
        where = use.where[0] + (f" and {len(use.where) - 1} more" if len(use.where) > 1 else "")
        obj = namespaces[namespace]
        try:
            for part in dotted.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            found.append(f"{namespace}.{dotted} does not exist in CuPy {cupy.__version__} (used at {where})")
            continue
        calls = {c for c in use.calls if c is not None}
        if not calls:
            continue
        signature = _signature(obj)
        if signature is None:
            if unchecked is not None:
                unchecked.append(f"{namespace}.{dotted}")
            continue
        self_ = (None,) if namespace == "Generator" else ()  # an unbound method: the generator comes first
        for positional, keywords in sorted(calls, key=str):
            try:
                signature.bind(*self_, *([None] * positional), **dict.fromkeys(keywords))
            except TypeError as err:
                found.append(f"{namespace}.{dotted}{signature} does not take {positional} positional argument(s) "
                             f"and keywords {sorted(keywords)} as scratchgen passes them ({err}; at {where})")
    return found


def _cupy_or_skip():
    try:
        return importlib.import_module("cupy"), importlib.import_module("cupyx")
    except ImportError as err:
        pytest.skip(f"CuPy is not installed ({err}); `pip install cupy-cuda12x` (it imports without a GPU) "
                    "to check scratchgen's use of CuPy's API")


# ------------------------------------------------------------------------------------------- tests


def test_the_scan_finds_the_array_module_the_generator_and_their_arguments():
    """Runs without CuPy: the scan itself, on names scratchgen certainly uses."""
    uses = scan()
    assert ("cupy", "zeros") in uses and ("cupy", "random.default_rng") in uses
    assert ("cupy", "lib.stride_tricks.as_strided") in uses
    assert ("cupy", "isfinite") in uses  # through `module = backend.xp if ... else numpy`
    normal = uses[("Generator", "standard_normal")]
    assert (1, frozenset({"dtype"})) in normal.calls
    assert any(w.startswith("scratchgen/data/mnist.py") for w in uses[("Generator", "random")].where)


def test_every_name_scratchgen_reaches_exists_in_cupy_and_takes_its_arguments():
    cupy, cupyx = _cupy_or_skip()
    uses = scan()
    listing = "\n".join(f"  {namespace}.{dotted}" + (f"  calls {sorted(map(str, use.calls))}" if use.calls else "")
                        for (namespace, dotted), use in sorted(_outermost(uses).items()))
    unchecked = []
    found = problems(uses, cupy, cupyx, unchecked)
    print(f"CuPy {cupy.__version__}: scratchgen reaches\n{listing}\n"
          f"arguments not checked (no signature to read): {unchecked or 'none'}")
    assert not found, "\n".join(found)


def test_the_check_fails_on_a_name_or_an_argument_cupy_lacks(tmp_path):
    """A check that cannot fail proves nothing: source that reaches names NumPy has and CuPy lacks."""
    cupy, cupyx = _cupy_or_skip()
    package = tmp_path / "scratchgen"
    package.mkdir()
    (package / "leaky.py").write_text(
        "from scratchgen import backend\n"
        "from scratchgen.backend import xp\n"
        "days = xp.busday_count('2024-01-01', '2024-02-01')\n"  # NumPy has it, CuPy does not
        "order = backend.rng().permutation(10)\n"  # numpy.random.Generator has it, CuPy's does not
        "noise = backend.rng().standard_normal((2, 2), dtype='float32', order='F')\n"  # no `order` in CuPy's
        "total = xp.exp(xp.zeros(3), where=True, colour=1)\n"  # a ufunc: checked by its docstring's signature
        "import cupyx\n"
        "cupyx.no_such_function(1)\n"
    )
    found = "\n".join(problems(scan(package), cupy, cupyx))
    assert "cupy.busday_count does not exist" in found
    assert "Generator.permutation does not exist" in found
    assert "Generator.standard_normal" in found and "'order'" in found
    assert "cupy.exp" in found and "'colour'" in found
    assert "cupyx.no_such_function does not exist" in found
    assert "cupy.zeros" not in found


def test_the_strict_backend_offers_only_what_cupy_has():
    """The strict backend (scratchgen/_strict.py) stands in for CuPy by a recorded list of names: each must
    exist in the installed CuPy, and so must each operator its arrays define (CuPy's have no ``__index__``)."""
    cupy, _ = _cupy_or_skip()
    from scratchgen import _strict

    places = {"cupy": (cupy, _strict._CUPY_NAMES), "cupy.linalg": (cupy.linalg, _strict._LINALG_NAMES),
              "cupy.fft": (cupy.fft, _strict._FFT_NAMES), "cupy.random": (cupy.random, _strict._RANDOM_NAMES),
              "cupy.lib.stride_tricks": (cupy.lib.stride_tricks, _strict._STRIDE_TRICKS_NAMES),
              "cupy.random.Generator": (cupy.random.Generator, _strict._GENERATOR_NAMES),
              "cupy.ndarray": (cupy.ndarray, _strict._NDARRAY_NAMES)}
    operators = {name for name in vars(_strict.StrictArray) if name.startswith("__") and name.endswith("__")}
    operators -= {"__module__", "__qualname__", "__doc__", "__slots__", "__getattr__", "__firstlineno__",
                  "__static_attributes__"}
    missing = [f"{place}.{name}" for place, (obj, names) in places.items() for name in sorted(names)
               if not hasattr(obj, name)]
    missing += [f"cupy.ndarray.{name}" for name in sorted(operators) if not hasattr(cupy.ndarray, name)]
    assert not missing, f"the strict backend offers names CuPy {cupy.__version__} lacks: {missing}"
