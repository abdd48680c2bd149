"""`guestlab serve`'s options: what it refuses before it listens, and how it runs uvicorn."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.web import server
from orchestrator.web.config import MAX_MESSAGE, ServeConfig


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    result = CliRunner().invoke(cli, ["serve", "--port", "0", "--tls-cert", str(cert)])
    assert result.exit_code != 0 and "go together" in str(result.exception)


def test_the_ssh_door_is_asked_for_only_when_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "ssh_door_present", lambda: False)
    result = CliRunner().invoke(cli, ["serve", "--port", "0", "--ssh-port", "0"])
    assert "no SSH door" in str(result.exception)


def test_uvicorn_gets_the_frame_cap_tls_and_no_access_log_of_its_own(tmp_path: Path) -> None:
    listen = server.Listen("127.0.0.1", 0, tmp_path / "c.pem", tmp_path / "k.pem")
    config = server.uvicorn_config(ServeConfig(db_path=tmp_path / "s.db"), listen)
    assert config.ws_max_size == MAX_MESSAGE
    assert config.ssl_certfile == str(tmp_path / "c.pem")
    assert config.access_log is False


def test_a_busy_port_is_a_sentence() -> None:
    sock = server.bind("127.0.0.1", 0)
    try:
        with pytest.raises(Exception, match=r"cannot listen on 127\.0\.0\.1"):
            server.bind("127.0.0.1", sock.getsockname()[1])
        assert server.url(sock, tls=True).startswith("https://127.0.0.1:")
    finally:
        sock.close()
