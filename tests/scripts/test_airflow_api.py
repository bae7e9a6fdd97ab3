"""``AirflowApi`` (scripts/airflow_stack.py), the demo's REST client, against a stand-in
transport: an idempotent call the api-server did not answer in time (it waited on SQLite's
lock) is sent once more; a POST, which may have taken effect, is not."""

from __future__ import annotations

import sys

import httpx
import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from airflow_stack import AirflowApi


def api_answering(*answers) -> tuple[AirflowApi, list[str]]:
    """A client whose requests get ``answers`` in turn (an exception is raised)."""
    sent: list[str] = []
    pending = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        answer = pending.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    api = AirflowApi.__new__(AirflowApi)  # without logging in
    api.client = httpx.Client(base_url="http://airflow/api/v2",
                              transport=httpx.MockTransport(handle))
    return api, sent


def test_an_idempotent_call_that_timed_out_is_sent_once_more():
    api, sent = api_answering(httpx.ReadTimeout("timed out"),
                              httpx.Response(200, json={"is_paused": False}))
    api.set_paused("bikes_monitor", False)
    assert sent == ["PATCH", "PATCH"]


def test_a_second_timeout_and_a_post_timeout_are_raised():
    api, sent = api_answering(httpx.ReadTimeout("timed out"), httpx.ReadTimeout("again"))
    with pytest.raises(httpx.ReadTimeout):
        api.set_paused("bikes_monitor", False)
    assert sent == ["PATCH", "PATCH"]
    api, sent = api_answering(httpx.ReadTimeout("timed out"))
    with pytest.raises(httpx.ReadTimeout):
        api.trigger("flights_train", {})
    assert sent == ["POST"]
