"""`study status` says when no driver is attached to a study whose rows still say running (issue 24, item 9:
after the driver died, status showed a live study with 12 running trials)."""

from __future__ import annotations

import datetime as dt

from study import heartbeat
from study.cli import main
from tests.study.test_folder_safety import _write_study


def test_a_fresh_heartbeat_is_a_live_driver_and_a_stale_or_missing_one_is_not(tmp_path):
    location = str(tmp_path)
    assert heartbeat.driver_warning(location, running=0) is None
    missing = heartbeat.driver_warning(location, running=3)
    assert "no driver is attached (no driver has written a heartbeat)" in missing
    assert "the 3 trial(s) recorded as running are not running" in missing and "study resume" in missing
    heartbeat.beat(location)
    assert heartbeat.driver_warning(location, running=3) is None
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=heartbeat.STALE_S + 60)
    stale = heartbeat.driver_warning(location, running=3, now=later)
    assert "its last heartbeat" in stale and "min old" in stale
    heartbeat.stop(location)
    assert heartbeat.read(location) is None


def test_status_warns_when_running_trials_have_no_driver(tmp_path, capsys):
    _study, location = _write_study(tmp_path, ["running", "completed", "running", "completed"])
    assert main(["status", location]) == 0
    out = capsys.readouterr().out
    assert "warning: no driver is attached" in out and "the 2 trial(s) recorded as running" in out
    heartbeat.beat(location)  # a driver is attached: nothing to say
    assert main(["status", location]) == 0
    assert "no driver is attached" not in capsys.readouterr().out
