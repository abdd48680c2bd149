"""Reaching LXD: the local socket or a remote endpoint, and whether it can be used.

The local unix socket by default; a remote LXD (a cluster member, for a large class)
through GUESTLAB_LXD_ENDPOINT, GUESTLAB_LXD_CERT, GUESTLAB_LXD_KEY and GUESTLAB_LXD_VERIFY.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.backends.contract import Availability
from orchestrator.backends.lxd.config import OWN_POOL, SIZE_ENFORCED
from orchestrator.backends.lxd.execution import Tls
from orchestrator.messages import N_, _

if TYPE_CHECKING:
    from pylxd import Client

START_FIX = N_(
    "start the LXD daemon: `lxd --group root >/var/log/lxd.log 2>&1 &` where PID 1 is not "
    "systemd, else `systemctl start snap.lxd.daemon` (snap) or `systemctl start lxd`"
)
INIT_FIX = N_(
    "initialise LXD: `lxd init --auto` (or scripts/setup/lxd.sh for a dir pool, no network)"
)


@dataclass(frozen=True)
class Connection:
    """A client that answered, the pool machines go to and what that pool can enforce."""

    client: Client
    pool: str
    driver: str | None
    tls: Tls | None
    clustered: bool = False
    #: a cluster's certificate fingerprint ("" for one LXD, local or not): the host's
    #: locks (lxd/host.py) are a cluster's own, one LXD's are those of main's guestlab
    server: str = ""

    @property
    def local(self) -> bool:
        """LXD on this host's unix socket (its processes and logs are this host's)."""
        return self.tls is None

    @property
    def disk_bounded(self) -> bool:
        return self.driver in SIZE_ENFORCED


def shared_unix_adapter() -> Any:
    """pylxd's unix-socket adapter, with one connection pool per socket.

    pylxd keys its pools by whole URL, keeps 25 and closes the oldest, so with many
    threads (a class check) a pool can close under a request that is using it.
    """
    from urllib.parse import urlsplit

    from pylxd import client as pylxd_client

    class SharedUnixAdapter(pylxd_client._UnixAdapter):  # type: ignore[misc]
        def get_connection(self, url: str, proxies: Any = None) -> Any:
            key = urlsplit(url).netloc
            with self.pools.lock:
                conn = self.pools.get(key)
                if conn is None:
                    conn = pylxd_client._UnixSocketHTTPConnectionPool(url)
                    conn.pool.maxsize = 64  # type: ignore[attr-defined]
                    self.pools[key] = conn
            return conn

    return SharedUnixAdapter()


def _verify_setting() -> bool | str:
    verify_env = os.environ.get("GUESTLAB_LXD_VERIFY", "")
    if verify_env.lower() in ("false", "0", "no"):
        return False
    return verify_env or True


def websocket_tls(verify: bool | str, cert: tuple[str, str] | None) -> Tls:
    """The TLS the exec websockets use: the same trust as the HTTP session's.

    A certificate file in GUESTLAB_LXD_VERIFY is pinned (by its SHA-256), as pylxd's HTTP
    adapter does; True means the system's CAs and the host name.
    """
    if isinstance(verify, str):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        with open(verify, "rb") as f:
            pem = x509.load_pem_x509_certificate(f.read())
        pin = hashlib.sha256(pem.public_bytes(serialization.Encoding.DER)).hexdigest()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # checked against the pin instead
    elif verify:
        pin, context = None, ssl.create_default_context()
    else:
        pin, context = None, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(cert[0], cert[1])
    return Tls(context, pin)


def connect() -> tuple[Client, Tls | None]:
    """A pylxd client (raises pylxd's ClientConnectionFailed when LXD does not answer)."""
    import pylxd  # lazy: the CLI must start without pylxd installed
    import requests
    from pylxd import client as pylxd_client

    endpoint = os.environ.get("GUESTLAB_LXD_ENDPOINT")
    # connect quickly, but let long operations (image import, /wait) take their time
    timeout = (10, 900)
    session = requests.Session()
    if not endpoint:
        session.mount("http+unix://", shared_unix_adapter())
        return pylxd.Client(timeout=timeout, session=session), None
    cert_file = os.environ.get("GUESTLAB_LXD_CERT")
    key_file = os.environ.get("GUESTLAB_LXD_KEY")
    cert = (cert_file, key_file) if cert_file and key_file else None
    verify = _verify_setting()
    # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE would otherwise replace GUESTLAB_LXD_VERIFY
    session.trust_env = False
    session.cert = cert
    session.verify = verify
    if isinstance(verify, str):
        session.mount(endpoint, pylxd_client.LXDSSLAdapter())  # pins the server's cert
    client = pylxd.Client(endpoint=endpoint, timeout=timeout, session=session)
    return client, websocket_tls(verify, cert)


def choose_pool(client: Client, pools: list[str]) -> str | None:
    """$GUESTLAB_LXD_POOL, else a pool called `guestlab`, else the default profile's.

    The set-up script makes `guestlab` a copy-on-write (btrfs) pool where it can: on a
    `dir` pool every instance, copy and snapshot is an rsync of the whole root
    filesystem, seconds each, where btrfs takes a tenth of one (docs/performance.md), and
    LXD cannot bound a machine's disk.
    """
    wanted = os.environ.get("GUESTLAB_LXD_POOL")
    if wanted:
        return wanted if wanted in pools else None
    if OWN_POOL in pools:
        return OWN_POOL
    try:
        root = client.profiles.get("default").devices.get("root", {})
    except Exception:
        root = {}
    if root.get("pool") in pools:
        return str(root["pool"])
    return pools[0] if len(pools) == 1 else None


def open_connection() -> tuple[Availability, Connection | None]:
    """Whether LXD can be used here (one sentence and the fix), and the connection if so."""
    try:
        import pylxd.exceptions
    except ImportError:
        return Availability(False, _("pylxd is not installed"), "pip install 'guestlab[lxd]'"), None
    try:
        client, tls = connect()
    except pylxd.exceptions.ClientConnectionFailed as exc:
        return _unreachable(str(exc).strip() or "no answer"), None
    except Exception as exc:  # availability never raises: say what went wrong instead
        return Availability(
            False, _("cannot reach LXD: {error}").format(error=exc), _(START_FIX)
        ), None
    try:
        if client.host_info.get("auth") != "trusted":
            return Availability(
                False,
                _("LXD does not trust this client's certificate"),
                _("on the server: `lxc config trust add <cert>` (GUESTLAB_LXD_CERT)"),
            ), None
        version = client.host_info.get("environment", {}).get("server_version", "?")
        pools = {p.name: p for p in client.storage_pools.all()}
        if not pools:
            return Availability(
                False, _("LXD {version} has no storage pool").format(version=version), _(INIT_FIX)
            ), None
        pool = choose_pool(client, list(pools))
        driver = getattr(pools[pool], "driver", None) if pool else None
    except Exception as exc:
        return Availability(
            False, _("LXD answers but cannot be queried: {error}").format(error=exc), _(INIT_FIX)
        ), None
    if pool is None:
        names = ", ".join(pools)
        wanted = os.environ.get("GUESTLAB_LXD_POOL")
        detail = (
            f"storage pool `{wanted}` (GUESTLAB_LXD_POOL) does not exist"
            if wanted
            else "the default profile has no root disk and several pools exist"
        )
        return Availability(
            False, detail, _("set GUESTLAB_LXD_POOL to one of: {names}").format(names=names)
        ), None
    env = client.host_info.get("environment", {})
    clustered = bool(env.get("server_clustered"))
    server = env.get("certificate_fingerprint", "") if clustered else ""
    conn = Connection(client, pool, driver, tls, clustered, server)
    where = f"LXD {version}" + (_(" (a cluster)") if clustered else "")
    if conn.disk_bounded:
        detail = f"{where}, storage pool `{pool}` ({driver}: disk bounds enforced)"
        if conn.local and driver == "btrfs":
            detail += _slow_quotas(pool)
    else:
        detail = (
            f"{where}, storage pool `{pool}` ({driver}: LXD cannot bound a machine's"
            " disk there, a machine can fill the host's file system; scripts/setup/lxd.sh"
            " makes a btrfs pool `guestlab` that can)"
        )
    return Availability(True, detail), conn


def _slow_quotas(pool: str) -> str:
    """What `doctor` adds when a local btrfs pool has full qgroup accounting, which LXD
    turns on when it finds quotas off: every new machine and copy then costs the kernel a
    walk of the pool's shared extents (a cold class of 30 took 420 s, not 100)."""
    from orchestrator.backends import btrfs_quota
    from orchestrator.backends.lxd.host import pool_quota_mode

    if pool_quota_mode(pool) != "qgroup" or not btrfs_quota.simple_available():
        return ""
    return "; " + _(
        "its quotas are full qgroup accounting, which makes every new machine and copy slow;"
        " scripts/setup/lxd.sh, run with no LXD instance, turns simple quotas on"
    )


def _unreachable(reason: str) -> Availability:
    where = os.environ.get("GUESTLAB_LXD_ENDPOINT") or "the local unix socket"
    if "Permission denied" in reason:
        return Availability(
            False,
            _("no permission on LXD's socket ({where})").format(where=where),
            _("run as root or add your user to the `lxd` group"),
        )
    if "SSL" in reason or "certificate" in reason.lower() or "ingerprint" in reason:
        return Availability(
            False,
            _("the TLS handshake with LXD at {where} failed: {reason}").format(
                where=where, reason=reason
            ),
            _(
                "check GUESTLAB_LXD_VERIFY (the server's certificate) and"
                " GUESTLAB_LXD_CERT / GUESTLAB_LXD_KEY (a client certificate it"
                " trusts)"
            ),
        )
    return Availability(
        False,
        _("LXD does not answer on {where}: {reason}").format(where=where, reason=reason),
        _(START_FIX),
    )


def available_memory(client: Client) -> int:
    """Bytes of memory the LXD server has free for new machines (total minus used), by its
    own account (/1.0/resources): the host that counts when LXD runs elsewhere.

    KeyError, ValueError or TypeError when the server does not say (an older LXD), and
    pylxd's or requests' errors when it does not answer.
    """
    memory = client.api.resources.get().json()["metadata"]["memory"]
    return int(memory["total"]) - int(memory["used"])
