"""Config files: every example loads; every invalid file is refused naming file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config as agent_config
from collector import config as collector_config
from linecheck.configfile import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "config"


def test_agent_example_loads_with_every_documented_check() -> None:
    cfg = agent_config.load(ROOT / "config" / "agent.example.yaml")
    assert set(cfg.checks) >= {"link", "ping"}
    assert cfg.line.plan_down_mbps == 500


def test_collector_example_loads() -> None:
    cfg = collector_config.load(ROOT / "config" / "collector.example.yaml")
    assert cfg.database.startswith("sqlite:///")


def test_agent_defaults_from_minimal_file(tmp_path: Path) -> None:
    p = tmp_path / "a.yaml"
    p.write_text("agent_id: a\nline_id: l\nsite_id: s\n")
    cfg = agent_config.load(p)
    assert cfg.mqtt.port == 1883 and set(cfg.checks) == {"link", "ping"}


# One invalid file per rule: file name -> (loader, exact text expected in the message).
CASES = {
    "agent_missing_id.yaml": (agent_config.load, "agent_id: required key is missing"),
    "agent_bad_id.yaml": (agent_config.load, "agent_id: String should match pattern"),
    "agent_unknown_key.yaml": (agent_config.load, "mqtt.hots: unknown key"),
    "agent_bad_port.yaml": (agent_config.load, "mqtt.port: Input should be less than or equal to 65535"),
    "agent_unknown_check.yaml": (agent_config.load, "checks.pnig: unknown check kind; known kinds: "),
    "agent_bad_check_setting.yaml": (agent_config.load,
                                     "checks.ping.count: Input should be greater than or equal to 1"),
    "agent_check_unknown_key.yaml": (agent_config.load, "checks.link.windw_s: unknown key"),
    "agent_not_mapping.yaml": (agent_config.load, "(top level): expected a mapping of keys, got list"),
    "agent_bad_yaml.yaml": (agent_config.load, "line 4, column 1: not valid YAML"),
    "agent_tls_half.yaml": (agent_config.load, "cert_file and key_file must be given together"),
    "collector_bad_dsn.yaml": (collector_config.load, "database: expected sqlite:///PATH or postgresql+psycopg"),
    "collector_bad_batch.yaml": (collector_config.load, "ingest.batch_max: Input should be greater than or equal to 1"),
    "agent_bad_broker.yaml": (agent_config.load,
                              "mqtt.brokers: '10.0.0.2:99999': the port must be a number from 1 to 65535"),
    "collector_bad_broker_kind.yaml": (collector_config.load, "broker.kind: Input should be 'mqtt' or 'nats'"),
    "collector_bad_nats_url.yaml": (collector_config.load,
                                    "broker.nats.servers: '127.0.0.1:4222': expected a URL such as nats://"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_config_names_file_key_and_expectation(name: str) -> None:
    loader, expected = CASES[name]
    path = DATA / name
    with pytest.raises(ConfigError) as exc:
        loader(path)
    text = str(exc.value)
    assert text.startswith(f"{path}: "), text
    assert expected in text, text


def test_every_invalid_file_has_a_case() -> None:
    assert sorted(p.name for p in DATA.glob("*.yaml")) == sorted(CASES)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        agent_config.load(tmp_path / "nope.yaml")
