"""Packaging: the package list, the compiled core, and sdist -> wheel on a fresh venv."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize(("folder", "prefix"), [("protocols", "mpcai.protocols"),
                                                 ("benchmarks", "mpcai.benchmarks"),
                                                 ("mpcai", "mpcai")])
def test_every_package_is_listed(folder: str, prefix: str) -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    base = ROOT / folder
    found = {
        ".".join([prefix, *init.parent.relative_to(base).parts])
        for init in base.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_native_core_is_compiled_and_importable() -> None:
    from mpcai import _native

    assert _native.lib.MPCAI_OK == 0
    assert Path(_native.__file__).suffix in (".so", ".pyd")


def test_console_script_entry_point() -> None:
    assert _pyproject()["project"]["scripts"]["mpcai"] == "mpcai.cli:main"
    out = subprocess.run([sys.executable, "-m", "mpcai.cli", "--help"], capture_output=True,
                         text=True, check=True, cwd="/")
    assert "demo" in out.stdout and "bench" in out.stdout


@pytest.mark.slow
def test_sdist_rebuilds_extension_into_working_wheel(tmp_path: Path) -> None:
    """sdist -> wheel -> install in a fresh venv -> the C core works there."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    sdist = next(dist.glob("mpcai-*.tar.gz"))
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(sdist)],
                   check=True, capture_output=True)
    wheel = next(dist.glob("mpcai-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("mpcai/_native") for n in names)
    assert "mpcai/protocols/__init__.py" in names
    assert "mpcai/benchmarks/primitives.py" in names
    assert not any("build_native" in n for n in names), "the cffi builder must not ship"
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=True)
    py = env_dir / "bin" / "python"
    # --ignore-installed: mpcai may also be installed system-wide (same version)
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)], check=True, capture_output=True)
    code = (
        "import mpcai, numpy as np; from mpcai import prg;"
        "assert 'venv' in mpcai.__file__, mpcai.__file__;"
        "v = prg.ring_vector(bytes(32), 8); assert v.dtype == np.uint64 and v.size == 8;"
        "print('ok')"
    )
    out = subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.stdout.strip() == "ok"
    out = subprocess.run([str(env_dir / "bin" / "mpcai"), "--help"], check=True,
                         capture_output=True, text=True)
    assert "bench" in out.stdout
