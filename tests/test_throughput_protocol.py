"""The throughput protocol is one contract (linecheck/throughput/protocol.py) both sides read: the agent
never imports the carrier's test server, and no side spells a protocol path of its own."""

from __future__ import annotations

import ast
import http.client
import json
import re
import subprocess
import sys
from pathlib import Path

from agent.lan.client import RESULT_PATH, STATION_PATH
from linecheck.throughput import protocol as p
from testserver.http import Limits, ThroughputServer

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "linecheck" / "throughput" / "protocol.py"
PATHS = [p.DOWNLOAD, p.UPLOAD, p.LATENCY, p.STATUS, p.LIBRESPEED_GARBAGE, p.LIBRESPEED_EMPTY, p.LIBRESPEED_GET_IP,
         p.OOKLA_LATENCY, p.OOKLA_UPLOAD, "/speedtest/random"]
SPELLED = re.compile("|".join(re.escape(path) + r"(?![A-Za-z0-9_])" for path in PATHS))


def test_importing_any_agent_module_never_imports_the_carrier_test_server() -> None:
    code = ("import pkgutil, importlib, sys, agent\n"
            "names = [m.name for m in pkgutil.walk_packages(agent.__path__, 'agent.')\n"
            "         if not m.name.endswith('__main__')]\n"
            "for name in names: importlib.import_module(name)\n"
            "print(len(names), ' '.join(m for m in sys.modules if m == 'testserver' or m.startswith('testserver.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    count, _, loaded = out.stdout.strip().partition(" ")
    assert int(count) > 40 and loaded == ""


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _spelled_paths(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _docstrings(tree)
    return [f"{path.relative_to(ROOT)}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
            and SPELLED.search(n.value)]


def test_no_side_spells_a_protocol_path_of_its_own() -> None:
    sources = [*sorted((ROOT / "agent").rglob("*.py")), *sorted((ROOT / "testserver").rglob("*.py")),
               *sorted((ROOT / "linecheck" / "throughput").rglob("*.py"))]
    found = [hit for src in sources if src != PROTOCOL for hit in _spelled_paths(src)]
    assert found == [], "use linecheck.throughput.protocol"
    assert _spelled_paths(PROTOCOL), "the guard must see the protocol's own paths"


def test_the_browser_page_calls_only_protocol_and_agent_api_paths() -> None:
    js = (ROOT / "agent" / "lan" / "static" / "lantest.js").read_text()
    called = set(re.findall(r'url\("(/[^"]*)"', js)) | set(re.findall(r'fetch\("(/[^"]*)"', js))
    assert called and called <= {*p.ENGINE_PATHS, STATION_PATH, RESULT_PATH}, called


def test_the_server_answers_as_the_protocol_says() -> None:
    with ThroughputServer("127.0.0.1", 0, Limits(max_tests=1, idle_s=30, token="t0k")) as srv:
        host, port = srv.address
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", p.LATENCY)
        assert conn.getresponse().read() == p.LATENCY_ANSWER
        conn.request("GET", p.download_target(100, "a"))
        refused = conn.getresponse()
        assert refused.status == p.UNAUTHORISED and set(json.loads(refused.read())) == {"error", "detail"}
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", p.download_target(100, "a"), headers=p.auth_header("t0k"))
        ok = conn.getresponse()
        assert (ok.status, ok.getheader("Content-Type"), len(ok.read())) == (p.OK, p.CONTENT_TYPE_BYTES, 100)
        conn.request("POST", p.upload_target("a"), body=b"x" * 1000, headers=p.auth_header("t0k"))
        assert json.loads(conn.getresponse().read()) == {p.RECEIVED_BYTES: 1000}
        other = http.client.HTTPConnection(host, port, timeout=10)
        other.request("GET", p.download_target(p.ADMISSION_BYTES, "b"), headers=p.auth_header("t0k"))
        busy = other.getresponse()
        assert busy.status == p.BUSY and p.error_text(busy.read()).startswith(p.BUSY_ERROR)
