"""The bisect's search on simulated oracles: exact answers, and 10% of them wrong."""

from __future__ import annotations

import math
import random

import pytest

from knockout.search.bisect import Answer, search


@pytest.mark.parametrize("n", [1, 2, 7, 50, 100, 1000])
def test_exact_answers_need_at_most_log2_n_plus_2_probes(n: int) -> None:
    for boundary in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        asked: list[int] = []

        def ask(k: int, b: int = boundary, log: list[int] = asked) -> Answer:
            log.append(k)
            return Answer(k < b, 0.0)

        found = search(n, ask, noise=0.001)
        assert found.boundary == found.low == found.high == boundary, (n, boundary, asked)
        assert found.probes <= math.ceil(math.log2(n)) + 2, (n, boundary, asked)


@pytest.mark.parametrize(("n", "runs"), [(128, 1000), (1024, 200)])
def test_ten_percent_wrong_answers_still_find_the_boundary(n: int, runs: int) -> None:
    rng = random.Random(1)
    right, probes = 0, []
    for _ in range(runs):
        boundary = rng.randint(0, n)

        def ask(k: int, b: int = boundary) -> Answer:
            truth = k < b
            return Answer(truth if rng.random() >= 0.1 else not truth, 0.1)

        found = search(n, ask)
        right += found.boundary == boundary
        probes.append(found.probes)
    assert right / runs >= 0.95, right / runs
    assert sum(probes) / runs <= 4 * math.log2(n), sum(probes) / runs


def test_unanswered_and_excluded_points_are_left_out() -> None:
    asked: list[int] = []

    def ask(k: int) -> Answer:
        asked.append(k)
        if k == 5:
            return Answer(None, 0.5, excluded=True)  # its cut breaks the work
        if k == 4:
            return Answer(None, 0.5)  # inconclusive: probed once more, then left out
        return Answer(k < 6, 0.0)

    found = search(10, ask, noise=0.001)
    assert asked.count(5) == 1 and asked.count(4) <= 2
    # 3 removes it and 6 does not: the boundary is 4, 5 or 6, which points 4 and 5 could tell
    assert (found.low, found.high) == (4, 6) and found.probes < 10


def test_probeable_points_only() -> None:
    found = search(4, lambda k: Answer(k < 2, 0.0), probeable=[True, False, True, True])
    assert (found.low, found.high) == (1, 2)
