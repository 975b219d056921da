"""An output's health as its owner reads it: states, times, counts, and one alert per failure."""

from __future__ import annotations

from server.rooms.output_health import OutputHealth, plain_words


class Clock:
    def __init__(self) -> None:
        self.now = 1_765_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_output_goes_idle_retrying_connected_with_its_times_and_counts() -> None:
    clock = Clock()
    health = OutputHealth("obs", clock)
    assert health.to_dict()["state"] == "idle" and health.to_dict()["last_ok"] is None
    clock.now += 2
    health.failed("connect")
    shown = health.to_dict()
    assert shown["state"] == "retrying" and "nothing answers" in shown["last_error"]
    assert shown["since"] == "2025-12-06T05:46:42Z"
    clock.now += 3
    health.failed("timeout")  # still retrying: since stays where the failure began
    assert health.to_dict()["since"] == shown["since"] and health.failing_for() == 3.0
    health.delivered()
    health.dropped_one()
    shown = health.to_dict()
    assert (shown["state"], shown["sent"], shown["dropped"]) == ("connected", 1, 1)
    assert shown["last_ok"] == "2025-12-06T05:46:45Z" and health.failing_for() == 0.0


def test_a_failure_is_alerted_once_after_the_delay_and_again_after_a_recovery() -> None:
    clock = Clock()
    health = OutputHealth("youtube", clock)
    health.failed("status", 403)
    assert "stream key" in (health.last_error or "")
    clock.now += 30
    assert not health.alert_due(30.0)
    clock.now += 1
    assert health.alert_due(30.0) and not health.alert_due(30.0)  # once
    health.delivered()
    health.failed("connect")
    clock.now += 31
    assert health.alert_due(30.0)  # a new failure, a new alert


def test_every_reason_has_words() -> None:
    for reason in ("connect", "refused_destination", "timeout", "redirect", "handshake", "protocol"):
        assert plain_words(reason) != "it failed"
    assert "404" in plain_words("status", 404)
