"""Why an inference request or a session was not served: shared by every backend and scheduler."""

from __future__ import annotations


class Superseded(Exception):
    """A waiting partial request was replaced by the same session's newer one."""


class SchedulerClosed(Exception):
    """The backend stopped (or the session left) before the request ran."""


class SchedulerFull(Exception):
    """Admission control: no device has room for another session."""


class BackendUnavailable(SchedulerFull):
    """Inference cannot be reached right now (a broker is down); new sessions should retry later."""
