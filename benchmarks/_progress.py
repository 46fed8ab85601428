"""Progress of a benchmark run, on stderr (stdout is the table; JSON goes to its file).

A suite's ``main`` opens :func:`running` with the steps it will take (its
sub-suites or sizes); its ``run`` calls :func:`step` as each starts, and
every record made with :func:`benchmarks._common.record` while it runs is
reported by :func:`measured`.  Every event is one line on stderr, always
(a CI log shows what ran, and when)::

    [mpcai bench he 1/2 paillier] started (0.0 s)
    [mpcai bench he 1/2 paillier] paillier encrypt 2048: ours 1.20 ms, phe 9.80 ms: 8.17x (3.4 s)
    [mpcai bench he] done: 14 measurements in 61.2 s

On a terminal, a ``tqdm`` bar over the steps stays below the lines.  Outside
:func:`running` (a suite's ``run`` called from code) nothing is printed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from ._common import fmt_s

__all__ = ["Progress", "measured", "note", "plan", "running", "step"]


class Progress:
    """The progress of one benchmark run: ``title``, its ``steps``, the lines written."""

    def __init__(self, title: str, steps: Sequence[str], *, stream: IO[str] | None = None,
                 bar: bool | None = None) -> None:
        self.title = title
        self.steps = list(steps)
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self.index = 0  # 1-based index of the step running, 0 before the first
        self.current = ""
        self.count = 0
        if bar is None:
            isatty = getattr(self.stream, "isatty", None)
            bar = bool(isatty and isatty())
        self._bar: Any = None
        if bar and self.steps:
            from tqdm import tqdm

            self._bar = tqdm(total=len(self.steps), desc=title, unit="step", file=self.stream,
                             leave=False, dynamic_ncols=True,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def _prefix(self) -> str:
        if not self.index:
            return f"[{self.title}]"
        return f"[{self.title} {self.index}/{len(self.steps)} {self.current}]"

    def _line(self, text: str) -> None:
        line = f"{self._prefix()} {text} ({time.perf_counter() - self.t0:.1f} s)"
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
            self._bar.refresh()
        else:
            print(line, file=self.stream, flush=True)

    def step(self, name: str) -> None:
        """Step ``name`` starts (the next of :attr:`steps`, or an extra one if unlisted)."""
        if self._bar is not None and self.index:
            self._bar.update(1)
        self.index += 1
        if self.index > len(self.steps):
            self.steps.append(name)
            if self._bar is not None:
                self._bar.total = len(self.steps)
        self.current = name
        if self._bar is not None:
            self._bar.set_postfix_str(name, refresh=True)
        self._line("started")

    def measured(self, rec: dict) -> None:
        """A measurement is done: its name, both times and the ratio."""
        self.count += 1
        self._line(f"{rec['name']}: ours {fmt_s(rec['ours_s'])}, {rec['baseline_name']} "
                   f"{fmt_s(rec['baseline_s'])}: {rec['ratio']:.2f}x")

    def note(self, text: str) -> None:
        """A free-text line (e.g. a long measurement starting)."""
        self._line(text)

    def close(self) -> None:
        """The closing line (and the bar removed)."""
        if self._bar is not None:
            self._bar.update(self._bar.total - self._bar.n)
            self._bar.close()
            self._bar = None
        self.index = 0
        self._line(f"done: {self.count} measurements")


_active: Progress | None = None


@contextmanager
def running(title: str, steps: Sequence[str], *, stream: IO[str] | None = None,
            bar: bool | None = None) -> Iterator[Progress]:
    """Report progress of ``title`` while the block runs (``bar``: default, on a TTY)."""
    global _active
    prog = Progress(title, steps, stream=stream, bar=bar)
    previous, _active = _active, prog
    try:
        yield prog
        prog.close()
    finally:
        if prog._bar is not None:  # an exception: remove the bar, keep the lines
            prog._bar.close()
        _active = previous


def plan(steps: Sequence[str]) -> None:
    """Declare the active run's steps (a ``run`` that knows them only once it starts)."""
    if _active is not None and not _active.index:
        _active.steps = list(steps)
        if _active._bar is not None:
            _active._bar.total = len(steps)
            _active._bar.refresh()


def step(name: str) -> bool:
    """:meth:`Progress.step` on the active run; returns False (and does nothing)
    outside :func:`running`."""
    if _active is None:
        return False
    _active.step(name)
    return True


def measured(rec: dict) -> None:
    """:meth:`Progress.measured` on the active run; nothing outside :func:`running`."""
    if _active is not None:
        _active.measured(rec)


def note(text: str) -> bool:
    """:meth:`Progress.note` on the active run; returns False outside :func:`running`."""
    if _active is None:
        return False
    _active.note(text)
    return True
