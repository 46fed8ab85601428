"""The API reference: docs/ builds with Sphinx, warnings as errors, and stays self-contained.

The build runs in a child interpreter (``-P``: a source checkout in the working
directory cannot shadow the installed package) into a temporary folder, so
docs/_build is never touched.  A second, tiny build of a deliberately broken
docstring shows that a warning really fails the build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# page -> the module it documents and one member that only autodoc can have written
API_PAGES = {
    "encoding": ("mpcai.encoding", "mpcai.encoding.encode_fixed"),
    "prg": ("mpcai.prg", "mpcai.prg.derive_seed"),
    "dp": ("mpcai.dp", "mpcai.dp.discrete_gaussian"),
    "additive": ("mpcai.sharing.additive", "mpcai.sharing.additive.share"),
    "shamir": ("mpcai.sharing.shamir", "mpcai.sharing.shamir.reconstruct"),
    "paillier": ("mpcai.he.paillier", "mpcai.he.paillier.generate_keypair"),
    "ckks": ("mpcai.he.ckks", "mpcai.he.ckks.CKKSContext.decrypt_flooded"),
    "runtime": ("mpcai.runtime", "mpcai.runtime.Party.gather"),
    "runtime#run_local": ("mpcai.runtime", "mpcai.runtime.run_local"),
    "testing": ("mpcai.testing", "mpcai.testing.FaultyNetwork"),
    "validation": ("mpcai.validation", "mpcai.validation.check_int"),
    "errors": ("mpcai.errors", "mpcai.errors.MpcaiError"),
    "audit": ("mpcai.audit", "mpcai.audit.read_transcript"),
    "secure_aggregation": ("mpcai.protocols.secure_aggregation",
                           "mpcai.protocols.secure_aggregation.SecAggConfig"),
    "he_aggregation": ("mpcai.protocols.he_aggregation",
                       "mpcai.protocols.he_aggregation.HEAggConfig"),
}


def _sphinx(src: Path, out: Path, tmp: Path, extra_path: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = None if extra_path is None else {**os.environ, "PYTHONPATH": str(extra_path)}
    return subprocess.run(
        [sys.executable, "-P", "-m", "sphinx", "-W", "--keep-going", "-E", "-q",
         "-b", "html", "-d", str(tmp / "doctrees"), str(src), str(out)],
        capture_output=True, text=True, cwd=tmp, env=env, timeout=300,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("docs")
    out = tmp / "html"
    proc = _sphinx(DOCS, out, tmp)
    assert proc.returncode == 0, f"sphinx failed (warnings are errors):\n{proc.stderr}"
    assert proc.stderr.strip() == "", proc.stderr
    return out


@pytest.mark.slow
def test_docs_build_without_warnings_and_document_every_public_module(built: Path) -> None:
    index = (built / "index.html").read_text()
    assert 'href="protocols.html"' in index
    for key, (module, member) in API_PAGES.items():
        page = key.partition("#")[0]
        assert f'href="api/{page}.html"' in index, f"{page} missing from the index"
        html = (built / "api" / f"{page}.html").read_text()
        assert f'id="module-{module}"' in html, f"{module} not documented on {page}"
        assert f'id="{member}"' in html, f"{member} not generated from its docstring"


@pytest.mark.slow
def test_docs_link_nothing_outside_the_repository(built: Path) -> None:
    for html in built.rglob("*.html"):
        text = html.read_text()
        external = re.findall(r'(?:href|src)="((?:[a-z]+:)?//[^"]*)"', text)
        assert not external, f"{html.name} links outside: {external}"
    for src in DOCS.rglob("*"):
        if src.is_file() and "_build" not in src.parts:
            text = src.read_text()
            assert "../" not in text and "http://" not in text and "https://" not in text, src


@pytest.mark.slow
def test_a_docstring_warning_fails_the_build(tmp_path: Path) -> None:
    """The same conf.py on a module whose docstring has an undefined
    substitution (``|x|``): the control build passes, the broken one fails."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(DOCS / "conf.py", src / "conf.py")
    (src / "index.rst").write_text("Probe\n=====\n\n.. automodule:: docprobe\n")
    mod = tmp_path / "mod"
    mod.mkdir()

    (mod / "docprobe.py").write_text('"""Probe.\n\n``|x|`` is a literal here."""\n')
    good = _sphinx(src, tmp_path / "good", tmp_path, extra_path=mod)
    assert good.returncode == 0, good.stderr

    (mod / "docprobe.py").write_text('"""Probe.\n\nThe bound |x| < 1 reads as a substitution."""\n')
    bad = _sphinx(src, tmp_path / "bad", tmp_path, extra_path=mod)
    assert bad.returncode != 0
    assert 'Undefined substitution referenced: "x"' in bad.stderr, bad.stderr
