"""The layering of docs/ARCHITECTURE.md and the wire rules, checked on every module's AST.

Layers (each imports only from those above it)::

    csrc/ (C)  ->  mpcai._bindings  ->  mpcai primitives  ->  mpcai.runtime  ->  mpcai.testing
               ->  protocols/ (mpcai.protocols, public primitives and runtime only)
               ->  mpcai.cli, benchmarks/, examples/

The scan parses every ``.py`` file of the source tree (not the installed package:
mpcai/, protocols/, benchmarks/, examples/) once, resolves relative imports, and treats
``importlib.import_module("x")``, ``__import__("x")``, ``importlib.util.find_spec("x")``
and ``pkgutil.resolve_name("x")`` with a constant string as imports of ``x``.  Every
rule is a function of one parsed source (``Source``): the same function checks the
tree and, in the self-tests, planted sources parsed from strings under a chosen module
name, so each rule is shown to report what it forbids.  A rule lists every violation
at once.

Out of reach of a static scan (by design): imports by a computed name (the launcher
imports a user's party function by a name it is given), attributes reached through
objects that are not module-level names bound by an import.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# source folder -> the dotted package it is installed as (examples/ are scripts)
PACKAGES = {"mpcai": "mpcai", "protocols": "mpcai.protocols",
            "benchmarks": "mpcai.benchmarks", "examples": "examples"}

# callables that import the module named by their first (constant string) argument
DYNAMIC_IMPORTS = ("import_module", "__import__", "find_spec", "resolve_name")


@dataclass(frozen=True)
class Import:
    """One module imported by a source: absolute dotted name and line."""

    line: int
    target: str


@dataclass
class Source:
    """One parsed module: its dotted name, where it is (for messages), its AST."""

    name: str
    where: str
    tree: ast.Module
    is_pkg: bool = False

    @property
    def package(self) -> str:
        return self.name if self.is_pkg else self.name.rpartition(".")[0]

    def resolve(self, module: str | None, level: int) -> str:
        """The absolute name of ``from <level dots><module> import ...`` in this source."""
        if not level:
            return module or ""
        base = self.package.split(".")
        base = base[:len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    @cached_property
    def imports(self) -> list[Import]:
        """Every import, including the imported names of ``from X import a, b`` as
        ``X.a`` and ``X.b`` and the dynamic imports of a constant name."""
        out = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                out += [Import(node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = self.resolve(node.module, node.level)
                out.append(Import(node.lineno, module))
                out += [Import(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            elif isinstance(node, ast.Call):
                target = self.dynamic_import(node)
                if target:
                    out.append(Import(node.lineno, target))
        return out

    def dynamic_import(self, call: ast.Call) -> str | None:
        """The module a call like ``importlib.import_module("m")`` imports, else None."""
        fn = call.func
        fname = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) \
            else None
        if fname not in DYNAMIC_IMPORTS or not call.args:
            return None
        arg = call.args[0]
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            return None
        name = arg.value.replace(":", ".")  # resolve_name("pkg.mod:attr")
        if name.startswith("."):  # import_module(".x", package="p")
            level = len(name) - len(name.lstrip("."))
            package = next((kw.value.value for kw in call.keywords if kw.arg == "package"
                            and isinstance(kw.value, ast.Constant)), None)
            base = Source(package, self.where, self.tree, True) if package else self
            return base.resolve(name[level:] or None, level)
        return name

    @cached_property
    def bindings(self) -> dict[str, str]:
        """Local name -> the absolute dotted name an import (anywhere in the file) binds
        it to: ``import a.b`` binds a -> a, ``import a.b as x`` x -> a.b, ``from a import
        b as y`` y -> a.b, ``m = importlib.import_module("a.b")`` m -> a.b."""
        out: dict[str, str] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        out[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        out[top] = top
            elif isinstance(node, ast.ImportFrom):
                module = self.resolve(node.module, node.level)
                for alias in node.names:
                    out[alias.asname or alias.name] = f"{module}.{alias.name}"
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                target = self.dynamic_import(node.value)
                if target and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    out[node.targets[0].id] = target
        return out

    def qualname(self, expr: ast.expr) -> str | None:
        """The absolute dotted name an expression denotes through the import bindings
        (``np.lib.npyio.load`` -> ``numpy.lib.npyio.load``), or None."""
        if isinstance(expr, ast.Name):
            return self.bindings.get(expr.id)
        if isinstance(expr, ast.Attribute):
            base = self.qualname(expr.value)
            return f"{base}.{expr.attr}" if base else None
        if isinstance(expr, ast.Call):
            return self.dynamic_import(expr)
        return None

    def at(self, line: int) -> str:
        return f"{self.where}:{line}: {self.name}"


def parse(name: str, text: str, where: str = "<planted>", is_pkg: bool = False) -> Source:
    return Source(name, where, ast.parse(text, where), is_pkg)


def _tree_sources() -> dict[str, Source]:
    out = {}
    for folder, dotted in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([dotted, *parts])
            out[name] = parse(name, path.read_text(), str(path.relative_to(ROOT)),
                              path.name == "__init__.py")
    return out


SOURCES = _tree_sources()


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


# ---- the rules: Source -> violations ------------------------------------------

def only_the_bindings_touch_the_compiled_module(src: Source) -> list[str]:
    return [f"{src.at(i.line)} imports {i.target} (only mpcai._bindings may)"
            for i in src.imports
            if _within(i.target, "mpcai._native") and src.name != "mpcai._bindings"]


def _own_protocol(name: str) -> str:
    return ".".join(name.split(".")[:3])  # mpcai.protocols.<name>


def protocols_use_only_the_public_api(src: Source) -> list[str]:
    """Protocols import public mpcai modules and names only (no component starting with
    ``_``), their own package's private modules, never mpcai.testing or mpcai.cli, and
    reach no private attribute (``x._name``, ``getattr(x, "_name")``) of anything an
    import of mpcai binds (but their own package)."""
    if not _within(src.name, "mpcai.protocols"):
        return []
    own = _own_protocol(src.name)
    out = []
    for i in src.imports:
        t = i.target
        if not _within(t, "mpcai") or _within(t, own):
            continue
        if any(_private(p) for p in t.split(".")):
            out.append(f"{src.at(i.line)} imports {t} (private mpcai API)")
        elif _within(t, "mpcai.testing") or _within(t, "mpcai.cli"):
            out.append(f"{src.at(i.line)} imports {t} (test or CLI code)")
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Attribute):
            base, attr = node.value, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "getattr" and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            base, attr = node.args[0], node.args[1].value
        else:
            continue
        q = src.qualname(base)
        if q and _within(q, "mpcai") and not _within(q, own) and _private(attr):
            out.append(f"{src.at(node.lineno)} reaches {q}.{attr} (private mpcai API)")
    return out


# layer of a dotted name: the first package that contains it
LAYERS = (("mpcai.runtime", "runtime", 1), ("mpcai.testing", "testing", 2),
          ("mpcai.protocols", "protocols", 3), ("mpcai.cli", "cli", 4),
          ("mpcai.integrations", "integrations", 4), ("mpcai.benchmarks", "benchmarks", 4),
          ("examples", "examples", 4),
          ("mpcai", "primitives", 0))


def _layer(name: str) -> tuple[str, int] | None:
    for package, layer, rank in LAYERS:
        if _within(name, package):
            return layer, rank
    return None


def each_layer_imports_only_the_layers_above(src: Source) -> list[str]:
    """primitives < runtime < testing < protocols < cli, benchmarks, examples: a module
    imports no module of a later layer (the runtime neither testing nor the CLI,
    testing neither the protocols nor the CLI, ...)."""
    own = _layer(src.name)
    out = []
    for i in src.imports:
        theirs = _layer(i.target)
        if own and theirs and theirs[1] > own[1]:
            out.append(f"{src.at(i.line)} imports {i.target} ({own[0]} may not import "
                       f"{theirs[0]})")
    return out


# ---- nothing from the network is unpickled -------------------------------------

_FORBIDDEN_MODULES = ("pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal",
                      "shelve", "joblib")
_EXEC = ("builtins.eval", "builtins.exec")


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _is_const(expr: ast.expr | None, value: object) -> bool:
    return isinstance(expr, ast.Constant) and expr.value is value


def nothing_can_unpickle(src: Source) -> list[str]:
    """No pickle-like module imported (statically or dynamically), no eval/exec (bare or
    through builtins), no pandas.read_pickle, no numpy load (np.load, from numpy import
    load, np.lib.npyio.load, ...) without allow_pickle=False, no torch.load without
    weights_only=True."""
    found = [f"{src.at(i.line)} imports {i.target}" for i in src.imports
             if i.target.split(".")[0] in _FORBIDDEN_MODULES]
    for call in (n for n in ast.walk(src.tree) if isinstance(n, ast.Call)):
        fn, at = call.func, src.at(call.lineno)
        q = src.qualname(fn) or ""
        bare = fn.id if isinstance(fn, ast.Name) and fn.id not in src.bindings else None
        last = fn.attr if isinstance(fn, ast.Attribute) else bare or q.rpartition(".")[2]
        if bare in ("eval", "exec") or q in _EXEC:
            found.append(f"{at} calls {q or bare}()")
        if last == "read_pickle":
            found.append(f"{at} calls read_pickle()")
        allow = _kw(call, "allow_pickle")
        if allow is not None and not _is_const(allow, False):
            found.append(f"{at} allow_pickle not False")
        if _within(q, "numpy") and q.rpartition(".")[2] in ("load", "read_array") \
                and allow is None:
            found.append(f"{at} {q} without allow_pickle=False")
        if q == "torch.load" and not _is_const(_kw(call, "weights_only"), True):
            found.append(f"{at} torch.load without weights_only=True")
    return found


RULES: dict[str, Callable[[Source], list[str]]] = {
    "native": only_the_bindings_touch_the_compiled_module,
    "protocols": protocols_use_only_the_public_api,
    "layers": each_layer_imports_only_the_layers_above,
    "pickle": nothing_can_unpickle,
}


# ---- the tree ------------------------------------------------------------------

def test_the_scan_sees_the_tree() -> None:
    """The scan must find the modules it is about, or every rule passes vacuously."""
    for must in ("mpcai._bindings", "mpcai.runtime.tcp", "mpcai.runtime.launcher",
                 "mpcai.testing", "mpcai.cli._demo", "mpcai.protocols.secure_aggregation.client",
                 "mpcai.he.paillier", "mpcai.benchmarks.primitives", "examples.three_parties"):
        assert must in SOURCES, must
    imports = {i.target for i in SOURCES["mpcai._bindings"].imports}
    assert "mpcai._native" in imports
    rel = {i.target for i in SOURCES["mpcai.protocols.secure_aggregation.client"].imports}
    assert "mpcai.protocols.secure_aggregation._crypto" in rel  # ``from . import _crypto``
    # a dynamic import with a constant name is seen
    flwr = {i.target for i in SOURCES["mpcai.benchmarks._secagg_flower"].imports}
    assert "flwr.client.mod.secure_aggregation.secaggplus_mod" in flwr


@pytest.mark.parametrize("rule", RULES, ids=str)
def test_the_tree_keeps_the_rule(rule: str) -> None:
    found = [v for src in SOURCES.values() for v in RULES[rule](src)]
    assert found == []


# ---- each rule reports what it forbids (planted sources, parsed from strings) ----

P = "mpcai.protocols.proto.client"  # a module of some protocol

VIOLATIONS = [
    # only mpcai._bindings touches the compiled module
    ("native", "mpcai.prg", "import mpcai._native\n", "imports mpcai._native"),
    ("native", "mpcai.prg", "from mpcai._native import lib\n", "imports mpcai._native"),
    ("native", "mpcai.prg", "from mpcai import _native\n", "imports mpcai._native"),
    ("native", "mpcai.sharing.shamir", "from .. import _native\n", "imports mpcai._native"),
    ("native", "mpcai.prg", "import importlib\nimportlib.import_module('mpcai._native')\n",
     "imports mpcai._native"),
    ("native", "mpcai.prg", "from importlib import import_module\n"
                            "import_module('._native', package='mpcai')\n",
     "imports mpcai._native"),
    ("native", "mpcai.prg", "__import__('mpcai._native')\n", "imports mpcai._native"),
    ("native", "mpcai.prg", "import importlib.util\nimportlib.util.find_spec('mpcai._native')\n",
     "imports mpcai._native"),
    ("native", "mpcai.prg", "import pkgutil\npkgutil.resolve_name('mpcai._native:lib')\n",
     "imports mpcai._native"),
    ("native", "examples.demo", "from mpcai._native import ffi\n", "imports mpcai._native"),
    # protocols: public API only
    ("protocols", P, "from mpcai import _bindings\n", "mpcai._bindings (private"),
    ("protocols", P, "import mpcai._bindings as b\n", "mpcai._bindings (private"),
    ("protocols", P, "from mpcai.sharing.shamir import _robust\n", "shamir._robust (private"),
    ("protocols", P, "from mpcai.runtime._tls import TlsCredentials\n", "_tls (private"),
    ("protocols", P, "from mpcai.protocols.other import _crypto\n", "other._crypto (private"),
    ("protocols", P, "from mpcai.testing import FaultyNetwork\n", "(test or CLI code)"),
    ("protocols", P, "import mpcai.cli\n", "(test or CLI code)"),
    ("protocols", P, "__import__('mpcai._bindings')\n", "mpcai._bindings (private"),
    ("protocols", P, "import importlib\nimportlib.import_module('mpcai.runtime._link')\n",
     "_link (private"),
    ("protocols", P, "from mpcai.sharing import shamir\nshamir._berlekamp_welch([], 1)\n",
     "reaches mpcai.sharing.shamir._berlekamp_welch"),
    ("protocols", P, "import mpcai.prg\nmpcai.prg._bindings.lib.f()\n",
     "reaches mpcai.prg._bindings"),
    ("protocols", P, "from mpcai import prg as p\n\ndef f():\n    return p._bindings\n",
     "reaches mpcai.prg._bindings"),
    ("protocols", P, "import mpcai.prg as prg\ngetattr(prg, '_bindings')\n",
     "reaches mpcai.prg._bindings"),
    ("protocols", P, "from mpcai.runtime import Party\nParty._inbox\n",
     "reaches mpcai.runtime.Party._inbox"),
    ("protocols", P, "import importlib\nimportlib.import_module('mpcai.prg')._bindings\n",
     "reaches mpcai.prg._bindings"),
    ("protocols", P, "import importlib\nm = importlib.import_module('mpcai.prg')\nm._bindings\n",
     "reaches mpcai.prg._bindings"),
    ("protocols", P, "from mpcai.protocols import other\nother._crypto.x\n",
     "reaches mpcai.protocols.other._crypto"),
    # each layer imports only the layers above it
    ("layers", "mpcai.prg", "import mpcai.runtime\n", "primitives may not import runtime"),
    ("layers", "mpcai.encoding", "from mpcai.testing import faults\n",
     "primitives may not import testing"),
    ("layers", "mpcai.he.ckks", "from ..runtime import party\n",
     "primitives may not import runtime"),
    ("layers", "mpcai.prg", "from mpcai.cli import main\n", "primitives may not import cli"),
    ("layers", "mpcai.sharing.additive", "from mpcai import benchmarks\n",
     "primitives may not import benchmarks"),
    ("layers", "mpcai", "from mpcai.runtime import Party\n", "primitives may not import runtime"),
    ("layers", "mpcai.runtime.party", "from mpcai.testing import FaultyNetwork\n",
     "runtime may not import testing"),
    ("layers", "mpcai.runtime.launcher", "from mpcai.cli import _party\n",
     "runtime may not import cli"),
    ("layers", "mpcai.runtime.launcher", "import importlib\n"
                                         "importlib.import_module('mpcai.cli._party')\n",
     "runtime may not import cli"),
    ("layers", "mpcai.runtime.party", "import mpcai.protocols\n",
     "runtime may not import protocols"),
    ("layers", "mpcai.testing.faults", "from mpcai.cli import _main\n",
     "testing may not import cli"),
    ("layers", "mpcai.testing.faults", "from ..protocols import secure_aggregation\n",
     "testing may not import protocols"),
    ("layers", P, "from mpcai.cli import _demo\n", "protocols may not import cli"),
    ("layers", P, "from mpcai import benchmarks\n", "protocols may not import benchmarks"),
    # nothing can unpickle
    ("pickle", "mpcai.prg", "import pickle\n", "imports pickle"),
    ("pickle", "mpcai.prg", "from pickle import loads\n", "imports pickle"),
    ("pickle", "mpcai.prg", "import cloudpickle as cp\n", "imports cloudpickle"),
    ("pickle", "mpcai.prg", "import importlib\nimportlib.import_module('marshal')\n",
     "imports marshal"),
    ("pickle", "mpcai.prg", "__import__('dill')\n", "imports dill"),
    ("pickle", "mpcai.prg", "import numpy as np\nnp.load('x.npy')\n", "numpy.load without"),
    ("pickle", "mpcai.prg", "import numpy\nnumpy.load('x.npy')\n", "numpy.load without"),
    ("pickle", "mpcai.prg", "import numpy as np\nnp.load('x.npy', allow_pickle=True)\n",
     "allow_pickle not False"),
    ("pickle", "mpcai.prg", "import numpy as np\nnp.load('x', allow_pickle=flag)\n",
     "allow_pickle not False"),
    ("pickle", "mpcai.prg", "from numpy import load\nload('x.npy')\n", "numpy.load without"),
    ("pickle", "mpcai.prg", "from numpy import load as ld\nld('x.npy')\n", "numpy.load without"),
    ("pickle", "mpcai.prg", "import numpy as np\nnp.lib.npyio.load('x.npy')\n",
     "numpy.lib.npyio.load without"),
    ("pickle", "mpcai.prg", "from numpy.lib import npyio\nnpyio.load('x.npy')\n",
     "numpy.lib.npyio.load without"),
    ("pickle", "mpcai.prg", "import numpy.lib.format as f\nf.read_array(fp)\n",
     "numpy.lib.format.read_array without"),
    ("pickle", "mpcai.prg", "eval('1')\n", "calls eval()"),
    ("pickle", "mpcai.prg", "exec('x = 1')\n", "calls exec()"),
    ("pickle", "mpcai.prg", "import builtins\nbuiltins.eval('1')\n", "calls builtins.eval()"),
    ("pickle", "mpcai.prg", "from builtins import exec as run\nrun('1')\n",
     "calls builtins.exec()"),
    ("pickle", "mpcai.prg", "import pandas as pd\npd.read_pickle('x')\n",
     "calls read_pickle()"),
    ("pickle", "mpcai.prg", "from pandas import read_pickle\nread_pickle('x')\n",
     "calls read_pickle()"),
    ("pickle", "mpcai.prg", "import torch\ntorch.load('x')\n", "torch.load without"),
    ("pickle", "examples.demo", "import pickle\n", "imports pickle"),
]


@pytest.mark.parametrize("rule, name, source, expect", VIOLATIONS,
                         ids=[f"{r}:{s.strip().splitlines()[-1][:40]}"
                              for r, _, s, _ in VIOLATIONS])
def test_the_rule_reports_a_planted_violation(rule: str, name: str, source: str,
                                              expect: str) -> None:
    is_pkg = name in ("mpcai",)
    found = RULES[rule](parse(name, source, is_pkg=is_pkg))
    assert any(expect in f for f in found), found


ALLOWED = [
    ("native", "mpcai._bindings", "from mpcai import _native\n"),
    ("native", "mpcai.prg", "from mpcai import _bindings\nimport mpcai.native_like\n"),
    ("protocols", P, "from __future__ import annotations\n"),
    ("protocols", P, "from . import _crypto\n_crypto._helper()\nfrom ._params import _k\n"),
    ("protocols", P, "from mpcai.protocols.proto import _crypto\n_crypto._x\n"),
    ("protocols", P, "from mpcai.sharing import shamir\nshamir.share(1)\nshamir.__name__\n"),
    ("protocols", P, "from mpcai.runtime import Party, run_local\nimport numpy as np\n"
                     "np._private\nobj._anything\n"),
    ("protocols", "mpcai.prg", "from mpcai import _bindings\n_bindings._x\n"),  # not a protocol
    ("layers", "mpcai.runtime.launcher",  # a child interpreter, not an import
     "import subprocess, sys\nsubprocess.run([sys.executable, '-m', 'mpcai.cli', 'party'])\n"),
    ("layers", "mpcai.runtime.local", "from mpcai.sharing import shamir\nfrom . import wire\n"),
    ("layers", "mpcai.testing.faults", "from mpcai.runtime import Party\n"),
    ("layers", P, "from mpcai.runtime import Party\nfrom mpcai import prg\n"),
    ("layers", "mpcai.cli._demo", "from mpcai.protocols import secure_aggregation\n"
                                  "from mpcai.testing import FaultyNetwork\n"),
    ("layers", "mpcai.benchmarks.runtime", "from mpcai.runtime._link import TcpLink\n"),
    ("layers", "examples.demo", "from mpcai.protocols import secure_aggregation\n"),
    ("pickle", "mpcai.prg", "import numpy as np\nnp.load('x.npy', allow_pickle=False)\n"),
    ("pickle", "mpcai.prg", "from numpy import load\nload('x.npy', allow_pickle=False)\n"),
    ("pickle", "mpcai.prg", "import json\njson.loads('1')\n"),
    ("pickle", "mpcai.prg", "def load(path):\n    return path\nload('x')\n"),
    ("pickle", "mpcai.prg", "import torch\ntorch.load('x', weights_only=True)\n"),
]


@pytest.mark.parametrize("rule, name, source", ALLOWED,
                         ids=[f"{r}:{s.strip().splitlines()[-1][:40]}" for r, _, s in ALLOWED])
def test_the_rule_allows(rule: str, name: str, source: str) -> None:
    """What the rules permit is not reported (the rules are not simply 'anything')."""
    assert RULES[rule](parse(name, source)) == []


# ---- docs/ARCHITECTURE.md describes the tree as it is ------------------------------

ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
_SKIP_DIRS = {".git", "build", "dist", "__pycache__", ".venv", "venv", ".mypy_cache",
              ".ruff_cache", ".pytest_cache", ".hypothesis"}


def _walk(top: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        for f in filenames:
            yield Path(dirpath) / f


def _layout_block(text: str) -> str:
    """The code block under '## Folder layout'."""
    section = text.split("## Folder layout", 1)[1]
    return section.split("```", 2)[1]


def _is_entry(line: str) -> bool:
    return bool(line.strip()) and len(line) - len(line.lstrip(" ")) < 20


def layout_entries(block: str) -> list[str]:
    """The paths of the layout tree (``mpcai/runtime/party.py``, ``tests/test_*.py``):
    an entry is the first word of a line indented by 2 per level (descriptions, and
    their continuation lines, start at column 20 or later)."""
    stack: list[str] = []
    out = []
    for line in block.splitlines():
        if not _is_entry(line):
            continue
        indent = len(line) - len(line.lstrip(" "))
        depth, token = indent // 2, line.split()[0]
        assert indent % 2 == 0 and depth <= len(stack), f"layout: bad indentation: {line!r}"
        parents = stack[:depth]
        assert all(p.endswith("/") for p in parents), f"layout: parent is a file: {line!r}"
        stack = [*parents, token]
        out.append("".join(stack))
    return out


def _exists(rel: str, bases: tuple[Path, ...] = (ROOT,)) -> bool:
    rel = rel.rstrip("/") or "."
    for base in bases:
        if any(c in rel for c in "*?["):
            if any(base.glob(rel)):
                return True
        elif (base / rel).exists():
            return True
    return False


_PATH_TOKEN = re.compile(r"[^\s`()\[\]{},;:'\"|]+")
# "rather than a tcp/ package": a folder named as what the code does not have
_NEGATION = re.compile(r"(?:\brather than|\binstead of|\bnot|\bno)\s+(?:an?\s+|the\s+)?`?$")
_EXTENSIONS = (".py", ".c", ".h", ".toml", ".md", ".rst", ".in", ".txt", ".cfg")


def path_tokens(text: str) -> list[str]:
    """Path-like words of the text: those with a '/' that end with '/' or a file
    extension or whose first component is a folder of the repo, mpcai/ or protocols/
    (``scalar/avx2/avx512`` is none of these); templates (``protocols/<name>/``), URLs
    and negated mentions ("rather than a tcp/ package") are left out."""
    folders = {p.name for base in (ROOT, ROOT / "mpcai", ROOT / "protocols")
               for p in base.iterdir() if p.is_dir()}
    out = []
    for m in _PATH_TOKEN.finditer(text):
        tok = m.group().rstrip(".")
        if "/" not in tok or "<" in tok or "://" in tok or not tok.strip("/") \
                or tok.startswith(("-", "/")) or _NEGATION.search(text[:m.start()][-40:]):
            continue
        if tok.endswith("/") or tok.endswith(_EXTENSIONS) or tok.split("/")[0] in folders:
            out.append(tok)
    return out


def _modules_and_packages() -> list[str]:
    """Every module of mpcai/, protocols/ and csrc/ (but __init__ / __main__) and every
    package folder, as paths relative to the repo (folders ending with '/')."""
    out = set()
    for folder in ("mpcai", "protocols", "csrc"):
        for p in _walk(ROOT / folder):
            if p.suffix not in (".py", ".c", ".h"):
                continue
            rel = p.relative_to(ROOT)
            if p.name not in ("__init__.py", "__main__.py"):
                out.add(str(rel))
            out.update(f"{Path(*rel.parts[:k])}/" for k in range(1, len(rel.parts)))
    return sorted(out)


def test_architecture_layout_names_every_module_and_package() -> None:
    """Every module of mpcai/, protocols/ and csrc/ appears by its file name at its
    place in the folder-layout tree (``party.py`` under ``mpcai/`` > ``runtime/``),
    every package folder too, and every entry of the tree exists."""
    entries = layout_entries(_layout_block(ARCHITECTURE.read_text()))
    missing = [m for m in _modules_and_packages() if m not in entries]
    assert missing == [], f"not in the layout of docs/ARCHITECTURE.md: {missing}"
    gone = [e for e in entries if not _exists(e)]
    assert gone == [], f"the layout of docs/ARCHITECTURE.md names what does not exist: {gone}"


def test_architecture_names_nothing_that_is_gone() -> None:
    """Every path-like word of the document (``mpcai/runtime/local.py``,
    ``runtime/_link.py``, ``protocols/secure_aggregation/``, ``tests/``, ...) resolves
    to a file or folder relative to the repo, mpcai/ or protocols/, and every bare file
    name (``fieldp.c``) exists somewhere in the repo."""
    text = ARCHITECTURE.read_text()
    # the layout's entries are paths relative to their place in the tree (checked above)
    block = _layout_block(text)
    bare = "\n".join(line.replace(line.split()[0], " ", 1) if _is_entry(line) else line
                     for line in block.splitlines())
    tokens = path_tokens(text.replace(block, bare, 1))
    assert "mpcai/runtime/local.py" in tokens and "runtime/_link.py" in tokens  # seen
    gone = sorted({t for t in tokens
                   if not _exists(t, (ROOT, ROOT / "mpcai", ROOT / "protocols"))})
    assert gone == [], f"docs/ARCHITECTURE.md names paths that do not exist: {gone}"
    names = set(re.findall(r"(?<![\w/.*-])(_?[A-Za-z][\w-]*\.(?:py|c|h|rst|md))\b", text))
    existing = {p.name for p in _walk(ROOT)}
    missing = sorted(names - existing)
    assert missing == [], f"docs/ARCHITECTURE.md names files that do not exist: {missing}"


@pytest.mark.parametrize("text, gone", [
    ("see `mpcai/runtime/gone.py` and", ["mpcai/runtime/gone.py"]),
    ("the framing of `runtime/_gone.py` inside", ["runtime/_gone.py"]),
    ("(`protocols/secure_aggregation/nothing.py`)", ["protocols/secure_aggregation/nothing.py"]),
    ("benchmarks_old/ and csrc/gone.c, tests/none/", ["benchmarks_old/", "csrc/gone.c",
                                                      "tests/none/"]),
    ("a path (scalar/avx2/avx512), send / recv, protocols/<name>/, https://x.org/a.py", []),
    ("modules rather than a tcp/ package, not `gone/`, but old/", ["old/"]),
    ("`mpcai/runtime/local.py`, runtime/_link.py, tests/test_*.py, examples/", []),
])
def test_the_path_check_catches(text: str, gone: list[str]) -> None:
    found = [t for t in path_tokens(text)
             if not _exists(t, (ROOT, ROOT / "mpcai", ROOT / "protocols"))]
    assert found == gone


def test_the_layout_parse_catches() -> None:
    block = ("mpcai/               the package\n"
             "  runtime/           its runtime; a description that goes on\n"
             "                     party.py on a continuation line is not an entry\n"
             "    wire.py          the codec\n"
             "  prg.py             seeds\n"
             "tests/\n")
    assert layout_entries(block) == ["mpcai/", "mpcai/runtime/", "mpcai/runtime/wire.py",
                                     "mpcai/prg.py", "tests/"]
    entries = layout_entries(block)
    assert "mpcai/runtime/party.py" not in entries  # a module left out is missing
    with pytest.raises(AssertionError, match="parent is a file"):
        layout_entries("mpcai/prg.py\n  child.py\n")


def test_readme_links_the_architecture() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/ARCHITECTURE.md" in readme and "../shared" not in readme
