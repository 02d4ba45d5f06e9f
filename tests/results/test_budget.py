"""The one cost rule (results_store.budget): the time a trial ran, not the waits between its attempts."""

from __future__ import annotations

import pandas as pd
import pytest

from results_store.budget import slot_seconds, trial_hours


def test_a_paused_trials_wait_is_not_counted_and_old_rows_fall_back_to_their_span():
    start = pd.Timestamp("2026-12-04T10:00:00Z")
    rows = pd.DataFrame(
        {
            "started_at": [start, start, start],
            "ended_at": [start + pd.Timedelta(hours=2), start + pd.Timedelta(seconds=90), pd.NaT],
            "updated_at": [start, start, start + pd.Timedelta(seconds=30)],
            "wall_time": [600.0, None, None],  # ran 10 min of its 2 h (paused at a rung for the rest)
            "cpus": [2.0, None, 1.0],
            "gpus": [0.0, 0.0, None],
        }
    )
    assert list(slot_seconds(rows)) == [600.0, 90.0, 30.0]
    hours, unit = trial_hours(rows)
    assert unit == "CPU-core-h"
    assert list(hours) == pytest.approx([600 * 2 / 3600, 90 / 3600, 30 / 3600])  # 1 core where unknown
    rows["gpus"] = [0.25, 0.5, 0.5]
    assert trial_hours(rows)[1] == "GPU-h" and trial_hours(rows)[0].iloc[0] == pytest.approx(
        600 * 0.25 / 3600
    )
