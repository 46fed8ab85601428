"""The SIMD switch: which path runs by default, capping, and the MPCAI_SIMD override.

The independent reference for what the CPU offers is the kernel's own
feature list in /proc/cpuinfo (Linux lists the AVX-512 flags only when it
also saves the ZMM state, so the list covers the OS-support half of the
check too).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from simd_paths import PATHS

from mpcai import _bindings as nb
from mpcai.errors import InvalidInput, InvalidType

AVX512_FLAGS = {"avx512f", "avx512dq", "avx512bw", "avx512vl"}


def cpu_flags() -> set[str] | None:
    """The flags of the first CPU in /proc/cpuinfo, or None off Linux."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def fresh_level(env: dict[str, str]) -> tuple[int, int]:
    """(simd_available(), simd_level()) in a new process: the default decision."""
    code = "from mpcai import _bindings as nb; print(nb.simd_available(), nb.simd_level())"
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], env=env, capture_output=True, text=True, check=True,
        timeout=120,
    )
    avail, level = out.stdout.split()
    return int(avail), int(level)


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MPCAI_SIMD", None)
    return env


def test_available_level_matches_cpu_flags() -> None:
    flags = cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo")
    x86 = "sse2" in flags
    if not x86:
        assert nb.simd_available() == 0
    elif AVX512_FLAGS <= flags:
        assert nb.simd_available() == 2
    elif "avx2" in flags:
        assert nb.simd_available() == 1
    else:
        assert nb.simd_available() == 0


def test_default_is_the_best_path_and_env_caps_it() -> None:
    avail, level = fresh_level(base_env())
    assert level == avail == nb.simd_available()
    for name, cap in (("scalar", 0), ("avx2", 1), ("avx512", 2), ("bogus", 2)):
        avail2, level2 = fresh_level({**base_env(), "MPCAI_SIMD": name})
        assert avail2 == avail
        assert level2 == min(cap, avail), name


def test_select_caps_to_available_and_reports_the_path() -> None:
    before = nb.simd_level()
    try:
        for level in range(3):
            got = nb.simd_select(level)
            assert got == min(level, nb.simd_available())
            assert nb.simd_level() == got
            assert nb.simd_path() == nb.SIMD_PATHS[got]
        assert nb.lib.mpcai_simd_select(99) == nb.simd_available()
        assert nb.lib.mpcai_simd_select(-3) == 0
    finally:
        nb.simd_select(before)


@pytest.mark.parametrize("bad, error", [(-1, InvalidInput), (3, InvalidInput),
                                        (1.0, InvalidType), (True, InvalidType),
                                        ("avx2", InvalidType)])
def test_select_rejects_unknown_levels(bad: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        nb.simd_select(bad)  # type: ignore[arg-type]


def test_fixture_runs_every_available_path(path: int) -> None:
    assert PATHS == list(range(nb.simd_available() + 1))
    assert nb.simd_level() == path
