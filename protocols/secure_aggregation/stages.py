"""Stages of secure aggregation and the transitions between them.

Each stage is a constant; each role keeps its progress in an explicit state
object whose :meth:`~StageMachine.advance` refuses any transition not in
:data:`LEGAL` with :class:`~mpcai.errors.IllegalTransition`.  The stage
name is also the message tag, so the runtime rejects a message that belongs
to another stage.
"""

from __future__ import annotations

import enum

from mpcai.errors import IllegalTransition

__all__ = ["LEGAL", "Stage", "StageMachine"]


class Stage(enum.Enum):
    """The rounds of Bonawitz et al. (CCS 2017), in order."""

    SETUP = "setup"
    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASK = "unmask"
    DONE = "done"


LEGAL: dict[Stage, frozenset[Stage]] = {
    Stage.SETUP: frozenset({Stage.ADVERTISE_KEYS}),
    Stage.ADVERTISE_KEYS: frozenset({Stage.SHARE_KEYS}),
    Stage.SHARE_KEYS: frozenset({Stage.MASKED_INPUT}),
    Stage.MASKED_INPUT: frozenset({Stage.CONSISTENCY_CHECK, Stage.UNMASK}),
    Stage.CONSISTENCY_CHECK: frozenset({Stage.UNMASK}),
    Stage.UNMASK: frozenset({Stage.DONE}),
    Stage.DONE: frozenset(),
}
"""For each stage, the stages that may follow it."""


class StageMachine:
    """The current stage of one party, advanced only along :data:`LEGAL` edges."""

    def __init__(self) -> None:
        self.stage = Stage.SETUP

    def advance(self, nxt: Stage) -> None:
        """Move to ``nxt``; raises :class:`~mpcai.errors.IllegalTransition` if not allowed."""
        if nxt not in LEGAL[self.stage]:
            raise IllegalTransition(f"{self.stage.value} cannot be followed by {nxt.value}")
        self.stage = nxt
