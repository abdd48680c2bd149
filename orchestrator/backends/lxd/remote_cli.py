"""LXD's own `lxc` client aimed where guestlab's API calls go, for interactive sessions.

A shell in a machine (`guestlab shell`, the web seat, the SSH door, a piped `exec`) runs
`lxc exec`, which talks to the LXD that its configuration names: the host's by default.
With GUESTLAB_LXD_ENDPOINT (a remote LXD, a cluster member) guestlab writes a
configuration of its own for `lxc` (LXD_CONF): one remote, `guestlab`, at that endpoint,
with guestlab's client certificate and the pinned server certificate, in a folder only
its owner reads. `lxc exec guestlab:INSTANCE` then reaches the instance on whichever
member holds it: LXD forwards the session.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from orchestrator import paths
from orchestrator.errors import BackendUnavailable
from orchestrator.messages import _

REMOTE = "guestlab"


def lxc(*args: str, instance: str) -> list[str]:
    """`lxc ARGS INSTANCE` against the LXD guestlab uses; ARGS end where the instance goes
    (`exec`, options), the rest is for the caller to add."""
    endpoint = os.environ.get("GUESTLAB_LXD_ENDPOINT")
    if not endpoint:
        return ["lxc", *args, instance]
    conf = configuration(endpoint)
    return ["env", f"LXD_CONF={conf}", "lxc", *args, f"{REMOTE}:{instance}"]


def configuration(endpoint: str) -> Path:
    """The LXD_CONF folder for `endpoint` (written when missing or changed)."""
    cert, key = os.environ.get("GUESTLAB_LXD_CERT"), os.environ.get("GUESTLAB_LXD_KEY")
    verify = os.environ.get("GUESTLAB_LXD_VERIFY", "")
    if not (cert and key and verify and Path(verify).is_file()):
        raise BackendUnavailable(
            _("a shell on a remote LXD needs its client certificate and the server's"),
            hint=_(
                "set GUESTLAB_LXD_CERT, GUESTLAB_LXD_KEY and GUESTLAB_LXD_VERIFY (the"
                " server's certificate file), as `scripts/lxd-cluster.sh up` prints them"
            ),
        )
    try:
        files = {
            "client.crt": Path(cert).read_bytes(),
            "client.key": Path(key).read_bytes(),
            f"servercerts/{REMOTE}.crt": Path(verify).read_bytes(),
            "config.yml": _config(endpoint).encode(),
        }
    except OSError as e:
        raise BackendUnavailable(
            _("cannot read a certificate for the remote LXD: {error}").format(error=e)
        ) from None
    digest = hashlib.sha256(b"\0".join(k.encode() + v for k, v in sorted(files.items())))
    folder = paths.home() / "lxd-client" / digest.hexdigest()[:16]
    if not (folder / "config.yml").is_file():
        _write(folder, files)
    return folder


def _config(endpoint: str) -> str:
    # JSON is YAML: the endpoint quoted whatever it holds
    return (
        "default-remote: local\n"
        "remotes:\n"
        f"  {REMOTE}:\n"
        f"    addr: {json.dumps(endpoint)}\n"
        "    protocol: lxd\n"
        "    auth_type: tls\n"
        "    public: false\n"
    )


def _write(folder: Path, files: dict[str, bytes]) -> None:
    """The whole folder or none of it (written aside, then renamed), readable by its owner
    only: it holds a private key."""
    partial = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "servercerts").mkdir(parents=True, mode=0o700)
    partial.chmod(0o700)
    for name, data in files.items():
        target = partial / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    paths.ensure(folder.parent)
    try:
        partial.rename(folder)
    except OSError:  # another process wrote the same folder first: theirs is as good
        shutil.rmtree(partial, ignore_errors=True)
