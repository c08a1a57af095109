"""Fixtures for API and console tests: a seeded two-carrier fleet and an HTTP client per user."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from collector.api.app import create_app
from collector.store.database import Store
from tests.fleet_data import Fleet, seed


class RecordingSender:
    """Stands in for the MQTT connection in API-only tests; the real path is tested in test_api_serve."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, agent_id: str, action: str, checks: list[str] | None, reason: str | None,
                 requested_by: str | None = None) -> str:
        self.sent.append((agent_id, action))
        return f"cmd-{len(self.sent)}"


@pytest.fixture(scope="module")
def _seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Fleet]:
    """Seed once per module (hashing nine passwords and migrating take seconds), copy per test."""
    path = tmp_path_factory.mktemp("fleet") / "template.db"
    template = seed(f"sqlite:///{path}")
    template.store.close()
    return path, template


@pytest.fixture
def fleet(_seeded: tuple[Path, Fleet], tmp_path: Path) -> Iterator[Fleet]:
    template_path, template = _seeded
    copy = tmp_path / "fleet.db"
    shutil.copyfile(template_path, copy)  # the template is closed and checkpointed: one file holds it all
    f = Fleet(Store(f"sqlite:///{copy}"), dict(template.tokens), template.results, template.quarantine_ids,
              template.tickets)
    yield f
    f.store.close()


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def client(fleet: Fleet, sender: RecordingSender) -> Iterator[TestClient]:
    with TestClient(create_app(fleet.engine, commands=sender)) as c:
        yield c


def auth(fleet: Fleet, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {fleet.tokens[user]}"}
