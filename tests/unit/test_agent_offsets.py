"""The agents' offset-continuity check."""

from __future__ import annotations

from dataclasses import dataclass

from streams.agents.offsets import check_contiguous


@dataclass
class _Message:
    partition: int
    offset: int
    tp: str = "t/0"


def test_contiguous_offsets_and_redelivery_pass_a_gap_is_reported() -> None:
    seen: dict[int, int] = {}
    assert check_contiguous(seen, _Message(0, 5)) is None  # first after (re)assignment
    assert check_contiguous(seen, _Message(0, 6)) is None
    assert check_contiguous(seen, _Message(1, 9)) is None  # partitions are independent
    assert check_contiguous(seen, _Message(0, 6)) is None  # redelivered
    gap = check_contiguous(seen, _Message(0, 9))
    assert gap is not None
    assert "offsets 7..8" in str(gap)
    assert seen == {0: 7, 1: 10}  # a gap is not recorded as progress
