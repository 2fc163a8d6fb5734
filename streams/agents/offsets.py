"""Offset continuity within one assignment, shared by the Faust agents.

faust-streaming can drop queued messages around a rebalance (see the "lost queue after
recovery" note in :mod:`streams.agents.readings`). An agent that sees a partition's offsets
jump within one assignment must stop rather than compute on: the skipped messages were never
acknowledged, so a restart processes them.
"""

from __future__ import annotations

from typing import Any


def check_contiguous(next_offset: dict[int, int], message: Any) -> RuntimeError | None:
    """Record ``message``'s offset in ``next_offset`` (partition -> next expected offset).

    Returns the error to stop with when offsets before ``message`` were skipped since the
    partition's last message; ``None`` otherwise (also for a partition's first message after
    the dict was cleared on a rebalance). Offsets at or below the expected one (redelivery)
    are accepted.
    """
    expected = next_offset.get(message.partition)
    if expected is not None and message.offset > expected:
        return RuntimeError(
            f"offsets {expected}..{message.offset - 1} of {message.tp} were dropped by the "
            "consumer; stopping so that a restart processes them"
        )
    next_offset[message.partition] = message.offset + 1
    return None
