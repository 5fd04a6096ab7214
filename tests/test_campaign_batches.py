"""How a scaled-out campaign is cut into child runs: from the sheet and the pool, not a fixed size."""

from __future__ import annotations

from tasks.campaign_rows import DEFAULT_POOL_RUNS, MIN_BATCH_ROWS, batch_rows


def test_rows_are_spread_over_the_runs_the_pool_takes_at_once() -> None:
    assert batch_rows(10_000, capacity=7, batch_size=None) == 1429  # 7 child runs beside the parent
    assert batch_rows(1_000, capacity=None, batch_size=None) == 1000 // DEFAULT_POOL_RUNS  # no pool limit


def test_batches_are_never_smaller_than_a_child_run_is_worth() -> None:
    assert batch_rows(600, capacity=50, batch_size=None) == MIN_BATCH_ROWS
    assert batch_rows(2 * MIN_BATCH_ROWS - 1, capacity=4, batch_size=None) == 0  # too few rows: made in the run itself


def test_a_pool_with_no_room_beside_the_parent_run_is_not_scaled_out_to() -> None:
    # a pool limited to one run: the parent holds it, a child would wait for ever
    assert batch_rows(10_000, capacity=0, batch_size=None) == 0


def test_an_explicit_batch_size_wins_where_the_pool_has_room() -> None:
    assert batch_rows(3, capacity=None, batch_size=2) == 2
    assert batch_rows(3, capacity=0, batch_size=2) == 0
