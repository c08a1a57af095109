"""Admission control of the test server: the shared one (linecheck/throughput/sessions.py), under the
name testserver's config, CLI and users have always imported."""

from linecheck.throughput.sessions import Limits, Refused, Sessions, TestSession

__all__ = ["Limits", "Refused", "Sessions", "TestSession"]
