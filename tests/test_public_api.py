"""The public API: what is exported, documented and typed."""

from __future__ import annotations

import importlib
import inspect

import pytest

import mpcai

PUBLIC_MODULES = [
    "mpcai",
    "mpcai.errors",
    "mpcai.encoding",
    "mpcai.prg",
    "mpcai.dp",
    "mpcai.validation",
    "mpcai.audit",
    "mpcai.sharing",
    "mpcai.sharing.additive",
    "mpcai.sharing.beaver",
    "mpcai.sharing.fss",
    "mpcai.sharing.ot",
    "mpcai.sharing.shamir",
    "mpcai.he.paillier",
    "mpcai.he.ckks",
    "mpcai.runtime",
    "mpcai.runtime.wire",
    "mpcai.runtime.party",
    "mpcai.runtime.network",
    "mpcai.runtime.memory",
    "mpcai.runtime.local",
    "mpcai.runtime.stats",
    "mpcai.runtime.launcher",
    "mpcai.runtime.tcp",
    "mpcai.runtime.certs",
    "mpcai.testing",
    "mpcai.testing.faults",
    "mpcai.integrations",
    "mpcai.integrations.flower",
    "mpcai.protocols.secure_aggregation.stepwise",
    "mpcai.protocols.inference",
    "mpcai.protocols.inference.he",
    "mpcai.protocols.he_aggregation",
    "mpcai.protocols.audit",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_module_documents_and_exports(name: str) -> None:
    mod = importlib.import_module(name)
    assert mod.__doc__ and len(mod.__doc__.strip()) > 20, f"{name} needs a module docstring"
    assert hasattr(mod, "__all__"), f"{name} must declare __all__"
    assert len(set(mod.__all__)) == len(mod.__all__), f"{name}.__all__ has duplicates"
    for sym in mod.__all__:
        obj = getattr(mod, sym)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, f"{name}.{sym} has no docstring"
            assert not obj.__module__.split(".")[-1].startswith("_") or obj.__module__ == name


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_functions_are_typed(name: str) -> None:
    mod = importlib.import_module(name)
    for sym in mod.__all__:
        obj = getattr(mod, sym)
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            assert sig.return_annotation is not inspect.Signature.empty, f"{name}.{sym}"
            for p in sig.parameters.values():
                assert p.annotation is not inspect.Parameter.empty, f"{name}.{sym}({p.name})"


def test_errors_are_also_builtin_errors() -> None:
    from mpcai import errors

    assert issubclass(errors.InvalidInput, ValueError)
    assert issubclass(errors.InvalidType, TypeError)
    assert issubclass(errors.EncodingOverflow, OverflowError)
    for cls in (errors.NotEnoughShares, errors.DuplicateShares, errors.InconsistentShares):
        assert issubclass(cls, errors.ShareError) and issubclass(cls, ValueError)
    for sym in errors.__all__:
        assert issubclass(getattr(errors, sym), errors.MpcaiError)


def test_import_has_no_side_effects() -> None:
    import logging
    import subprocess
    import sys

    code = ("import logging, sys; sys.argv = ['x', '--bogus']; import mpcai;"
            "assert not logging.getLogger().handlers; print('clean')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "clean", out.stderr
    assert mpcai.__version__
    assert logging.getLogger("mpcai").level == logging.NOTSET
