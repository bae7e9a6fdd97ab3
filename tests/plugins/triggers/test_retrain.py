"""RetrainPolicyTrigger: serialisable by class path, and firing on a real workspace's
reports when the retrain policy names an interval (never on a claimed one)."""

from __future__ import annotations

import asyncio

import pytest

from tests.policy_reports import drift, policy_home


def first_event(trigger, timeout: float):
    async def run():
        return await asyncio.wait_for(anext(trigger.run()), timeout)

    return asyncio.run(run())


def trigger_for(ws, **kwargs):
    from driftline_provider.triggers.retrain import RetrainPolicyTrigger

    settings = ws.settings
    return RetrainPolicyTrigger(ws.name, str(settings.home), str(settings.packs_dir),
                                settings.config_file, **{"poke_interval": 0.05, **kwargs})


def test_trigger_is_importable_by_path_and_round_trips():
    from airflow.sdk.module_loading import import_string
    from driftline_provider.triggers.retrain import RetrainPolicyTrigger

    path, kwargs = RetrainPolicyTrigger("flights", "/h", "/p", None, 2.0, 30.0).serialize()
    assert path == "driftline_provider.triggers.retrain.RetrainPolicyTrigger"
    assert kwargs == {"pack": "flights", "home": "/h", "packs_dir": "/p", "config_file": None,
                      "poke_interval": 2.0, "wait_first": 30.0}
    assert import_string(path)(**kwargs).serialize() == (path, kwargs)


def test_fires_on_the_due_interval_and_never_on_a_claimed_one(tmp_path, trained_home):
    from driftline.retraining import claim_interval, next_trigger

    ws = policy_home(tmp_path, trained_home)
    drift(ws, 3, 0.2)  # below the test threshold, 0.4
    drift(ws, 4, 0.5)
    event = first_event(trigger_for(ws), timeout=30)
    assert event.payload["status"] == "due"
    assert (event.payload["start"], event.payload["end"]) == ("2013-04-01", "2013-04-28")
    assert "share 0.500 >= 0.4" in event.payload["reason"]

    assert claim_interval(ws, next_trigger(ws), "run-1")
    with pytest.raises(TimeoutError):
        first_event(trigger_for(ws), timeout=1.5)
    drift(ws, 5, 0.45)
    assert first_event(trigger_for(ws), timeout=30).payload["start"] == "2013-05-01"


def test_waits_first_when_asked(tmp_path, trained_home):
    """After a train run was found active, the trigger holds off before it looks again."""
    ws = policy_home(tmp_path, trained_home)
    drift(ws, 4, 0.5)
    with pytest.raises(TimeoutError):
        first_event(trigger_for(ws, wait_first=5.0), timeout=1.5)
