"""mpcai.validation: the one home of argument checks (types, ranges, wording)."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest

from mpcai.errors import InvalidInput, InvalidType
from mpcai.validation import check_bool, check_bytes, check_int, check_real, read_file


def test_check_int_accepts_ints_numpy_and_mpz_and_returns_python_ints() -> None:
    for v in (3, np.int64(3), np.uint8(3), gmpy2.mpz(3)):
        out = check_int(v, "n")
        assert out == 3 and type(out) is int


@pytest.mark.parametrize("bad", [True, False, np.bool_(True), 1.0, "1", None, [1]])
def test_check_int_refuses_non_ints_as_invalid_type(bad: object) -> None:
    with pytest.raises(InvalidType, match=r"^n must be an int, not "):
        check_int(bad, "n")


def test_check_int_ranges_and_messages() -> None:
    assert check_int(5, "n", lo=5, hi=5) == 5
    with pytest.raises(InvalidInput, match=r"^n must be in \[1, 4\], got 5$"):
        check_int(5, "n", lo=1, hi=4)
    with pytest.raises(InvalidInput, match=r"^n must be at least 2, got 1$"):
        check_int(1, "n", lo=2)
    with pytest.raises(InvalidInput, match=r"^n must be at most 2, got 3$"):
        check_int(3, "n", hi=2)
    assert check_int(1 << 200, "big") == 1 << 200


def test_check_real() -> None:
    assert check_real(2, "x") == 2.0 and type(check_real(np.float32(0.5), "x")) is float
    for bad in (True, "1.0", None):
        with pytest.raises(InvalidType, match="x must be a number"):
            check_real(bad, "x")
    for bad in (float("nan"), float("inf"), -float("inf"), 10**400):
        with pytest.raises(InvalidInput):
            check_real(bad, "x")
    assert check_real(float("inf"), "x", finite=False) == float("inf")
    with pytest.raises(InvalidInput):
        check_real(float("nan"), "x", finite=False)
    with pytest.raises(InvalidInput, match=r"x must be positive, got 0\.0"):
        check_real(0, "x", positive=True)
    with pytest.raises(InvalidInput, match=r"x must be in \[0, 1\], got 1.5"):
        check_real(1.5, "x", lo=0, hi=1)


def test_check_bool_and_bytes() -> None:
    assert check_bool(np.bool_(False), "flag") is False
    for bad in (0, 1, "yes", None):
        with pytest.raises(InvalidType, match="flag must be True or False"):
            check_bool(bad, "flag")
    assert check_bytes(bytearray(b"ab"), "b") == b"ab"
    assert check_bytes(memoryview(b"ab"), "b", size=2) == b"ab"
    with pytest.raises(InvalidType, match="b must be bytes, not str"):
        check_bytes("ab", "b")
    assert check_bytes("ab", "b", allow_str=True) == b"ab"
    with pytest.raises(InvalidInput, match="b must be 3 bytes, got 2"):
        check_bytes(b"ab", "b", size=3)
    with pytest.raises(InvalidInput, match="b must be at most 1 bytes, got 2"):
        check_bytes(b"ab", "b", max_size=1)


def test_check_fields_builds_a_dataclass_and_names_bad_fields() -> None:
    import dataclasses

    from mpcai.validation import check_fields

    @dataclasses.dataclass(frozen=True)
    class Conf:
        n: int
        tags: list = dataclasses.field(default_factory=list)
        k: int = 3
        derived: int = dataclasses.field(init=False, default=0)

    assert check_fields({"n": 2}, Conf) == Conf(2)
    assert check_fields({"n": 2, "k": 5, "tags": [1]}, Conf) == Conf(2, [1], 5)
    with pytest.raises(InvalidType, match="config must be a dict of Conf fields"):
        check_fields([("n", 2)], Conf)
    with pytest.raises(InvalidInput, match=r"does not take: \['derived', 'x'\]"):
        check_fields({"n": 2, "x": 1, "derived": 1}, Conf)
    with pytest.raises(InvalidInput, match=r"cfg lacks the Conf fields \['n'\]"):
        check_fields({"k": 1}, Conf, "cfg")  # tags has a default_factory: not missing


def test_read_file_refuses_what_would_hang_or_never_end(tmp_path) -> None:
    import os

    (tmp_path / "ok").write_bytes(b"abc")
    assert read_file(tmp_path / "ok", "thing", 3) == b"abc"
    with pytest.raises(InvalidInput, match="larger than 2 bytes"):
        read_file(tmp_path / "ok", "thing", 2)
    os.mkfifo(tmp_path / "fifo")  # a plain open() would block until a writer came
    for path, why in ((tmp_path / "fifo", "not a regular file"),
                      ("/dev/zero", "not a regular file"),  # a read that never ends
                      (tmp_path, "not a regular file"),
                      (tmp_path / "missing", "cannot read the thing"),
                      ("a\0b", "cannot read the thing")):
        with pytest.raises(InvalidInput, match=why):
            read_file(path, "thing", 1 << 20)
