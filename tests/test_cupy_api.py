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

Where CuPy is not installed (CI: its wheel is 100 MB, and putting ``cupy-cuda12x`` in the test extra would
clash with ``cupy-cuda13x`` on a CUDA 13 machine, both being the package ``cupy``), the same checks run
against a *record* of the real package, ``tests/cupy_api.json``: the names of every CuPy namespace that
scratchgen or the strict backend reaches into, and the parameters of every function scratchgen calls,
read from an installed CuPy by ``python tests/test_cupy_api.py --record``. A name scratchgen starts to
use that the record lacks fails the check with the command to record again; and wherever CuPy is
installed (it imports without a GPU: ``pip install cupy-cuda12x``), the checks run against it as well,
and a test compares the record with it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "scratchgen"
RECORD = Path(__file__).resolve().parent / "cupy_api.json"
RECORD_COMMAND = "pip install cupy-cuda12x && python tests/test_cupy_api.py --record"

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


# ------------------------------------------------------------------------------- CuPy's API

#: The namespaces the strict backend (scratchgen/_strict.py) copies names from, with its lists of them.
STRICT_PLACES = {"cupy": "_CUPY_NAMES", "cupy.linalg": "_LINALG_NAMES", "cupy.fft": "_FFT_NAMES",
                 "cupy.random": "_RANDOM_NAMES", "cupy.lib.stride_tricks": "_STRIDE_TRICKS_NAMES",
                 "cupy.random.Generator": "_GENERATOR_NAMES", "cupy.ndarray": "_NDARRAY_NAMES"}
_ROOTS = {"cupy": "cupy", "cupyx": "cupyx", "Generator": "cupy.random.Generator"}  # a use's namespace, in full


def _full(namespace: str, dotted: str) -> str:
    return f"{_ROOTS[namespace]}.{dotted}"


@dataclass
class CupyAPI:
    """What the checks need to know of one CuPy: the names in each namespace ("cupy", "cupy.random",
    "cupy.random.Generator", ...) and the parameters of the functions scratchgen calls, by full name, each
    a list of (name, kind, has a default), or None where CuPy's function shows no signature."""

    version: str
    namespaces: dict
    parameters: dict
    source: str  # "installed" or the record's path, for messages

    @classmethod
    def installed(cls, cupy, cupyx, uses: dict) -> "CupyAPI":
        """Read from the installed package: every namespace that ``uses`` or the strict backend reaches
        into, and the signature of every function ``uses`` calls."""
        modules = {"cupy": cupy, "cupyx": cupyx}

        def resolve(full: str):
            head, *rest = full.split(".")
            obj = modules[head]
            for part in rest:
                obj = getattr(obj, part)
            return obj

        places = set(STRICT_PLACES) | {"cupyx"}  # the strict backend's, both roots, and those of ``uses``
        for (namespace, dotted), use in uses.items():
            places.add(_full(namespace, dotted).rpartition(".")[0])
        namespaces = {}
        for place in sorted(places):
            try:
                namespaces[place] = sorted(name for name in dir(resolve(place)) if not name.startswith("_"))
            except AttributeError:  # a namespace CuPy does not have: every name in it is missing
                namespaces[place] = []
        parameters = {}
        for (namespace, dotted), use in sorted(uses.items()):
            if not any(c is not None for c in use.calls):
                continue
            try:
                signature = _signature(resolve(_full(namespace, dotted)))
            except AttributeError:
                continue
            parameters[_full(namespace, dotted)] = None if signature is None else [
                [p.name, p.kind.name, p.default is not inspect.Parameter.empty]
                for p in signature.parameters.values()]
        return cls(cupy.__version__, namespaces, parameters, "installed")

    @classmethod
    def recorded(cls, path: Path = RECORD) -> "CupyAPI":
        data = json.loads(path.read_text())
        return cls(data["cupy_version"], data["namespaces"], data["parameters"], path.name)

    def record(self, path: Path = RECORD) -> None:
        """Write the record (to a temporary file first, then renamed, so a crash leaves the old one)."""
        data = {"cupy_version": self.version, "written_by": RECORD_COMMAND,
                "namespaces": self.namespaces, "parameters": self.parameters}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(temporary, path)

    def has(self, full: str):
        """True or False; None where the record does not cover the namespace of ``full``."""
        place, _, name = full.rpartition(".")
        if place not in self.namespaces:
            return None
        return name in self.namespaces[place]

    def signature(self, full: str):
        """inspect.Signature of a called function (None: CuPy shows none); KeyError where not recorded."""
        parameters = self.parameters[full]
        if parameters is None:
            return None
        P = inspect.Parameter
        return inspect.Signature([P(name, getattr(P, kind), default=None if has_default else P.empty)
                                  for name, kind, has_default in parameters])


def problems(uses: dict, api: CupyAPI, unchecked: list | None = None) -> list[str]:
    """What ``api`` (CuPy installed or recorded) lacks, or refuses, of ``uses``: one line per problem,
    naming the use. A name or a call the record does not cover is a problem too, whose line says how to
    record again. A call to a function whose signature cannot be read (a compiled function without a
    signature line) is not a problem; its name goes into ``unchecked``, if given."""
    found = []
    for (namespace, dotted), use in sorted(_outermost(uses).items()):
        where = use.where[0] + (f" and {len(use.where) - 1} more" if len(use.where) > 1 else "")
        full = _full(namespace, dotted)
        exists = api.has(full)
        if exists is None:
            found.append(f"{full} (used at {where}) is in a namespace that {api.source} does not cover: "
                         f"record CuPy's API again ({RECORD_COMMAND})")
            continue
        if not exists:
            found.append(f"{namespace}.{dotted} does not exist in CuPy {api.version} (used at {where})")
            continue
        calls = {c for c in use.calls if c is not None}
        if not calls:
            continue
        try:
            signature = api.signature(full)
        except KeyError:
            found.append(f"{full} is called at {where}, but {api.source} has no parameters for it: record "
                         f"CuPy's API again ({RECORD_COMMAND})")
            continue
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
                    "to check scratchgen's use of CuPy's API against the package itself, beside the record")


def _api(where: str, uses: dict) -> CupyAPI:
    """CuPy's API as recorded in tests/cupy_api.json, or as installed (skips without CuPy)."""
    if where == "recorded":
        return CupyAPI.recorded()
    cupy, cupyx = _cupy_or_skip()
    return CupyAPI.installed(cupy, cupyx, uses)


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


@pytest.mark.parametrize("where", ["recorded", "installed"])
def test_every_name_scratchgen_reaches_exists_in_cupy_and_takes_its_arguments(where):
    uses = scan()
    api = _api(where, uses)
    listing = "\n".join(f"  {namespace}.{dotted}" + (f"  calls {sorted(map(str, use.calls))}" if use.calls else "")
                        for (namespace, dotted), use in sorted(_outermost(uses).items()))
    unchecked = []
    found = problems(uses, api, unchecked)
    print(f"CuPy {api.version} ({api.source}): scratchgen reaches\n{listing}\n"
          f"arguments not checked (no signature to read): {unchecked or 'none'}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("where", ["recorded", "installed"])
def test_the_check_fails_on_a_name_or_an_argument_cupy_lacks(where, tmp_path):
    """A check that cannot fail proves nothing: source that reaches names NumPy has and CuPy lacks."""
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
    planted = scan(package)
    found = "\n".join(problems(planted, _api(where, planted)))
    assert "cupy.busday_count does not exist" in found
    assert "Generator.permutation does not exist" in found
    assert "Generator.standard_normal" in found and "'order'" in found
    assert "cupy.exp" in found and "'colour'" in found
    assert "cupyx.no_such_function does not exist" in found
    assert "cupy.zeros" not in found


def test_a_name_or_a_call_the_record_does_not_cover_asks_to_record_again(tmp_path):
    package = tmp_path / "scratchgen"
    package.mkdir()
    (package / "new.py").write_text("from scratchgen.backend import xp\n"
                                    "xp.polynomial.polyval(1, 2)\n"  # a namespace not recorded
                                    "xp.pi(3)\n")  # a name recorded, but never called before: no parameters
    found = problems(scan(package), CupyAPI.recorded())
    assert len(found) == 2 and all("record CuPy's API again" in line for line in found), found


def test_the_record_agrees_with_the_installed_cupy():
    """Where CuPy is installed: for every name scratchgen reaches, the record says what the package says
    (the record may be of another CuPy version; what matters is the names scratchgen uses)."""
    cupy, cupyx = _cupy_or_skip()
    uses = scan()
    installed, recorded = CupyAPI.installed(cupy, cupyx, uses), CupyAPI.recorded()
    disagree = [full for full in sorted({_full(n, d) for n, d in uses})
                if installed.has(full) != recorded.has(full)
                or installed.parameters.get(full) != recorded.parameters.get(full)]
    assert not disagree, (f"tests/cupy_api.json (CuPy {recorded.version}) and the installed CuPy "
                          f"{installed.version} disagree on {disagree}: record again ({RECORD_COMMAND})")


@pytest.mark.parametrize("where", ["recorded", "installed"])
def test_the_strict_backend_offers_only_what_cupy_has(where):
    """The strict backend (scratchgen/_strict.py) stands in for CuPy by a recorded list of names: each must
    exist in CuPy, and so must each operator its arrays define (CuPy's have no ``__index__``)."""
    from scratchgen import _strict

    api = _api(where, scan())
    operators = {name for name in vars(_strict.StrictArray) if name.startswith("__") and name.endswith("__")}
    operators -= {"__module__", "__qualname__", "__doc__", "__slots__", "__getattr__", "__firstlineno__",
                  "__static_attributes__"}
    missing = [f"{place}.{name}" for place, names in STRICT_PLACES.items()
               for name in sorted(getattr(_strict, names)) if not api.has(f"{place}.{name}")]
    if where == "installed":  # the record keeps public names only; the operators are checked on the package
        cupy, _ = _cupy_or_skip()
        missing += [f"cupy.ndarray.{name}" for name in sorted(operators) if not hasattr(cupy.ndarray, name)]
    assert not missing, f"the strict backend offers names CuPy {api.version} ({api.source}) lacks: {missing}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(f"usage: python {sys.argv[0]} --record   (writes {RECORD.name} from the installed CuPy)")
    sys.path.insert(0, str(SOURCE.parent))
    cupy_module, cupyx_module = importlib.import_module("cupy"), importlib.import_module("cupyx")
    api = CupyAPI.installed(cupy_module, cupyx_module, scan())
    api.record()
    print(f"recorded CuPy {api.version}: {sum(map(len, api.namespaces.values()))} names in "
          f"{len(api.namespaces)} namespaces, parameters of {len(api.parameters)} functions, into {RECORD}")
