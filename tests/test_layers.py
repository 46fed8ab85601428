"""The layering of docs/ARCHITECTURE.md and the wire rules, checked on every module's AST.

Layers (each imports only from those above it)::

    csrc/ (C)  ->  mpcai._bindings  ->  mpcai primitives  ->  mpcai.runtime, mpcai.testing
               ->  protocols/ (mpcai.protocols, public mpcai API only)
               ->  mpcai.cli, benchmarks/, examples/

The scan reads every ``.py`` file of the source tree (not the installed
package), resolves relative imports, and lists every violation at once.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# source folder -> the dotted package it is installed as
PACKAGES = {"mpcai": "mpcai", "protocols": "mpcai.protocols", "benchmarks": "mpcai.benchmarks"}


def _modules() -> Iterator[tuple[str, Path]]:
    for folder, dotted in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield ".".join([dotted, *parts]), path


MODULES = dict(_modules())


def _imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every import in the file, including the imported
    names of ``from X import a, b`` as ``X.a`` and ``X.b``."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _violations(rule: callable) -> list[str]:  # type: ignore[valid-type]
    out = []
    for name, path in MODULES.items():
        for line, target in _imports(name, path):
            why = rule(name, target)
            if why:
                out.append(f"{path.relative_to(ROOT)}:{line}: {name} imports {target} ({why})")
    return out


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_scan_sees_the_tree() -> None:
    """The scan must find the modules it is about, or every rule below passes vacuously."""
    for must in ("mpcai._bindings", "mpcai.runtime.tcp", "mpcai.cli._demo",
                 "mpcai.protocols.secure_aggregation.client", "mpcai.he.paillier"):
        assert must in MODULES, must
    imports = {t for _, t in _imports("mpcai._bindings", MODULES["mpcai._bindings"])}
    assert "mpcai._native" in imports
    rel = {t for _, t in _imports("mpcai.protocols.secure_aggregation.client",
                                  MODULES["mpcai.protocols.secure_aggregation.client"])}
    assert "mpcai.protocols.secure_aggregation._crypto" in rel  # ``from . import _crypto``


def test_only_the_bindings_touch_the_compiled_module() -> None:
    def rule(name: str, target: str) -> str | None:
        if _within(target, "mpcai._native") and name != "mpcai._bindings":
            return "only mpcai._bindings may import mpcai._native"
        return None

    assert _violations(rule) == []


def test_protocols_use_only_the_public_mpcai_api() -> None:
    def rule(name: str, target: str) -> str | None:
        if not _within(name, "mpcai.protocols") or not _within(target, "mpcai"):
            return None
        if _within(target, "mpcai.protocols"):
            # its own package's private modules are fine; another protocol's are not
            own = ".".join(name.split(".")[:3])
            if not _within(target, own) and any(p.startswith("_") for p in target.split(".")):
                return "another protocol's private module"
            return None
        if any(p.startswith("_") and p != "__future__" for p in target.split(".")):
            return "private mpcai API"
        if _within(target, "mpcai.testing") or _within(target, "mpcai.cli"):
            return "test or CLI code"
        return None

    assert _violations(rule) == []


def test_nothing_in_the_product_imports_a_protocol_but_the_cli() -> None:
    def rule(name: str, target: str) -> str | None:
        if not _within(target, "mpcai.protocols") or _within(name, "mpcai.protocols"):
            return None
        if _within(name, "mpcai.cli") or _within(name, "mpcai.benchmarks"):
            return None
        return "only mpcai.cli (demos, deployments) and the benchmarks may"

    assert _violations(rule) == []


def test_primitives_do_not_import_the_runtime_or_above() -> None:
    above = ("mpcai.runtime", "mpcai.testing", "mpcai.cli", "mpcai.protocols",
             "mpcai.benchmarks")

    def rule(name: str, target: str) -> str | None:
        if any(_within(name, pkg) for pkg in above):
            return None
        if any(_within(target, pkg) for pkg in above):
            return "a primitive importing a higher layer"
        return None

    assert _violations(rule) == []


# ---- nothing from the network is unpickled -------------------------------------

_FORBIDDEN_MODULES = ("pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal",
                      "shelve", "joblib")


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _unsafe(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for line, target in _imports("", path):
        if target.split(".")[0] in _FORBIDDEN_MODULES:
            found.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    for call in _calls(tree):
        fn = call.func
        name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) \
            else ""
        if name in ("eval", "exec") and isinstance(fn, ast.Name):
            found.append(f"{path.relative_to(ROOT)}:{call.lineno}: calls {name}()")
        for kw in call.keywords:
            if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant)
                                                 and kw.value.value is False):
                found.append(f"{path.relative_to(ROOT)}:{call.lineno}: allow_pickle not False")
        if name == "load" and isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) \
                and fn.value.id in ("np", "numpy") \
                and not any(kw.arg == "allow_pickle" for kw in call.keywords):
            found.append(f"{path.relative_to(ROOT)}:{call.lineno}: np.load without "
                         "allow_pickle=False")
    return found


def test_no_module_can_unpickle() -> None:
    """No module of the product, the protocols or the benchmarks imports a pickle-like
    module, calls eval/exec, or loads numpy files with pickles allowed."""
    found = [f for path in MODULES.values() for f in _unsafe(path)]
    assert found == []


@pytest.mark.parametrize("source, expect", [
    ("import pickle\n", "imports pickle"),
    ("from pickle import loads\n", "imports pickle"),
    ("import numpy as np\nnp.load('x.npy')\n", "np.load without"),
    ("import numpy as np\nnp.load('x.npy', allow_pickle=True)\n", "allow_pickle not False"),
    ("eval('1')\n", "calls eval()"),
])
def test_the_pickle_scan_catches(tmp_path: Path, source: str, expect: str) -> None:
    """The scan itself can fail: each forbidden pattern, planted in a file, is reported."""
    planted = ROOT / "build" / "_layer_probe.py"
    planted.parent.mkdir(exist_ok=True)
    planted.write_text(source)
    try:
        found = _unsafe(planted)
    finally:
        planted.unlink()
    assert any(expect in f for f in found), found


# ---- docs/ARCHITECTURE.md describes the tree as it is ------------------------------

ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def test_architecture_names_every_module_and_nothing_that_is_gone() -> None:
    """Every module of mpcai/, protocols/ and csrc/ appears in the map (by file name),
    and every file name the map mentions exists in the tree."""
    import re

    text = ARCHITECTURE.read_text()
    tree = [p for folder in ("mpcai", "protocols", "csrc") for p in (ROOT / folder).rglob("*")
            if p.suffix in (".py", ".c", ".h") and p.name not in ("__init__.py", "__main__.py")
            and "build" not in p.parts]
    missing = sorted(str(p.relative_to(ROOT)) for p in tree
                     if not re.search(rf"(?<![\w.]){re.escape(p.stem)}(\.\w+)?\b", text))
    assert missing == [], f"not in docs/ARCHITECTURE.md: {missing}"
    names = set(re.findall(r"(?<![\w/.])(_?[a-z][a-z0-9_]*\.(?:py|c|h))\b", text))
    existing = {p.name for p in ROOT.rglob("*") if p.suffix in (".py", ".c", ".h")
                and ".git" not in p.parts}
    gone = sorted(names - existing)
    assert gone == [], f"docs/ARCHITECTURE.md names files that do not exist: {gone}"


def test_readme_links_the_architecture() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/ARCHITECTURE.md" in readme and "../shared" not in readme
