"""One real server for the structured-output tests: the session's tiny checkpoint with a chat
template that teaches the Hermes `<tool_call>` format (tests/support/structured.py)."""
from __future__ import annotations

import pytest

from tests.support.server import RuntimeServer
from tests.support.structured import write_hermes_template


@pytest.fixture(scope="session")
def structured_server(tmp_path_factory, tiny_model):
    d = tmp_path_factory.mktemp("structured")
    s = RuntimeServer(tiny_model, ["--chat-template", str(write_hermes_template(d))],
                      d / "server.log", threads=2)
    try:
        yield s.wait_ready()
    finally:
        s.stop()
