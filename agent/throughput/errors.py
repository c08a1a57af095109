"""Why a throughput measurement produced no number. Each carries a reason a person can read."""

from __future__ import annotations


class MeasurementFailed(Exception):
    """The line or the server did not allow a measurement (recorded as status `failed`)."""

    status = "failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServerBusy(MeasurementFailed):
    """The measurement server refused the test because it is at its concurrency limit."""


class BackendError(MeasurementFailed):
    """The measuring tool itself could not run (missing binary, bad server spec): status `error`."""

    status = "error"
