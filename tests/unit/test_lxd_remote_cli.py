"""`lxc` aimed at the LXD guestlab uses: the host's when no endpoint is set, else a
configuration of guestlab's own with one remote, readable by its owner only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from orchestrator.backends.lxd import remote_cli
from orchestrator.errors import BackendUnavailable


@pytest.fixture
def certs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path / "home"))
    for name in ("client.crt", "client.key", "server.crt"):
        (tmp_path / name).write_text(f"-----{name}-----\n")
    monkeypatch.setenv("GUESTLAB_LXD_CERT", str(tmp_path / "client.crt"))
    monkeypatch.setenv("GUESTLAB_LXD_KEY", str(tmp_path / "client.key"))
    monkeypatch.setenv("GUESTLAB_LXD_VERIFY", str(tmp_path / "server.crt"))
    return tmp_path


def test_the_host_s_lxd_is_asked_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUESTLAB_LXD_ENDPOINT", raising=False)
    assert remote_cli.lxc("exec", "-T", instance="gl-x") == ["lxc", "exec", "-T", "gl-x"]


def test_a_remote_lxd_gets_a_private_configuration(
    certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUESTLAB_LXD_ENDPOINT", "https://10.231.7.11:8443")
    argv = remote_cli.lxc("exec", instance="gl-x")
    assert argv[0] == "env" and argv[2:] == ["lxc", "exec", "guestlab:gl-x"]
    conf = Path(argv[1].removeprefix("LXD_CONF="))
    config = (conf / "config.yml").read_text()
    assert 'addr: "https://10.231.7.11:8443"' in config and "auth_type: tls" in config
    assert (conf / "servercerts" / "guestlab.crt").read_text() == "-----server.crt-----\n"
    assert (conf / "client.key").read_text() == "-----client.key-----\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o700
    assert stat.S_IMODE((conf / "client.key").stat().st_mode) == 0o600
    assert remote_cli.lxc("exec", instance="gl-y")[1] == argv[1]  # written once
    # another server certificate: another folder, never a stale pin
    (certs / "server.crt").write_text("-----another-----\n")
    assert remote_cli.lxc("exec", instance="gl-x")[1] != argv[1]


def test_a_remote_lxd_without_its_certificates_is_a_clear_error(
    certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUESTLAB_LXD_ENDPOINT", "https://10.231.7.11:8443")
    monkeypatch.setenv("GUESTLAB_LXD_VERIFY", "false")
    with pytest.raises(BackendUnavailable) as refused:
        remote_cli.lxc("exec", instance="gl-x")
    assert "GUESTLAB_LXD_VERIFY" in (refused.value.hint or "")
