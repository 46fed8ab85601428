"""Logging: silent by default (a NullHandler on 'mpcai', nothing configured at import),
and the events a person debugging a deployment needs are logged under named loggers."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys

import numpy as np
import pytest
from mpcai.protocols import secure_aggregation as sa
from mpcai.protocols.secure_aggregation import Stage

from mpcai.runtime import Party

RNG = np.random.default_rng(7)  # data only
SERVER_LOG = "mpcai.protocols.secure_aggregation.server"


def test_import_configures_nothing() -> None:
    """In a fresh interpreter: importing mpcai (and its runtime and protocols) adds only
    a NullHandler to 'mpcai'; the root logger keeps no handlers and its level; every
    mpcai logger propagates and has no level of its own."""
    code = (
        "import logging\n"
        "root = logging.getLogger()\n"
        "level = root.level\n"
        "import mpcai, mpcai.runtime, mpcai.runtime.launcher, mpcai.cli\n"
        "import mpcai.protocols.secure_aggregation\n"
        "assert root.handlers == [], root.handlers\n"
        "assert root.level == level\n"
        "top = logging.getLogger('mpcai')\n"
        "assert [type(h).__name__ for h in top.handlers] == ['NullHandler'], top.handlers\n"
        "assert top.level == logging.NOTSET and top.propagate\n"
        "names = sorted(n for n in logging.root.manager.loggerDict if n.startswith('mpcai.'))\n"
        "for n in names:\n"
        "    lg = logging.getLogger(n)\n"
        "    assert lg.handlers == [] and lg.level == logging.NOTSET and lg.propagate, n\n"
        "print(' '.join(names))\n"
    )
    res = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    names = set(res.stdout.split())
    for expected in ("mpcai.runtime.party", "mpcai.runtime.tcp", "mpcai.runtime.launcher",
                     SERVER_LOG, "mpcai.protocols.secure_aggregation.client"):
        assert expected in names, (expected, names)
    assert res.stderr == ""


def test_nothing_is_printed_without_configuration(capfd: pytest.CaptureFixture[str]) -> None:
    """A WARNING logged under mpcai with logging unconfigured goes nowhere (the
    NullHandler stops logging's last-resort handler from printing it)."""
    code = ("import logging, mpcai\n"
            "logging.getLogger('mpcai.runtime.tcp').warning('must not be seen')\n")
    res = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stderr == "" and res.stdout == ""


def test_dropout_is_logged_naming_the_client(caplog: pytest.LogCaptureFixture) -> None:
    n = 5
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, timeout=10)
    with caplog.at_level(logging.DEBUG, logger="mpcai"):
        res = sa.simulate([RNG.uniform(-1, 1, 4) for _ in range(n)], cfg,
                          dropouts={4: Stage.MASKED_INPUT})
    assert res.aggregate.survivors == [1, 2, 3, 5]
    server = [r for r in caplog.records if r.name == SERVER_LOG]
    msgs = [r.getMessage() for r in server if r.levelno == logging.INFO]
    assert "server: masked_input: dropped clients [4]" in msgs
    # every stage reports its counts: 4 of 5 answered at masked_input only
    finished = [m for m in msgs if " finished in " in m]
    assert len(finished) == 4  # advertise, share, masked input, unmask
    assert any(m.startswith("server: masked_input finished") and
               m.endswith(": 4 of 5 clients answered") for m in finished)
    assert any(m.startswith("server: share_keys finished") and
               m.endswith(": 5 of 5 clients answered") for m in finished)
    assert any(r.name == "mpcai.protocols.secure_aggregation.client"
               and "client 4: dropping out before masked_input" in r.getMessage()
               for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_misbehaving_client_is_a_warning(caplog: pytest.LogCaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Client 2 reveals a self-mask share that is not the one committed to: corrected,
    and logged as a WARNING naming client 2."""
    n = 7
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, timeout=10)
    client_mod = importlib.import_module("mpcai.protocols.secure_aggregation.client")
    original = client_mod.Party.send

    async def send(self: Party, to: int, t: str, obj: object, **kw: object) -> None:
        if t == "unmask" and self.id == 2:
            assert isinstance(obj, dict)
            b = obj["b"].copy()
            b[:, 2] = (b[:, 2] + np.uint64(1)) % np.uint64(2**61 - 1)
            obj = {**obj, "b": b}
        await original(self, to, t, obj, **kw)

    monkeypatch.setattr(client_mod.Party, "send", send)
    with caplog.at_level(logging.INFO, logger="mpcai"):
        agg = sa.simulate([RNG.uniform(-1, 1, 5) for _ in range(n)], cfg,
                          dropouts={6: Stage.MASKED_INPUT}).aggregate
    assert agg.misbehaving == [2]
    warned = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING and r.name == SERVER_LOG]
    assert warned == ["server: unmask: misbehaving clients [2] (their shares left out)"]
