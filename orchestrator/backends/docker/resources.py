"""A lab's Docker resources found, made and removed by their labels."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from orchestrator.backends.common import short
from orchestrator.backends.contract import (
    LABEL_LAB,
    LABEL_MACHINE,
    LABEL_STORE,
    FoundResources,
    LabRef,
)
from orchestrator.backends.docker import sdk
from orchestrator.backends.docker.engine import START_FIX
from orchestrator.backends.firewall import CONTAINER_PREFIX, bridge_name
from orchestrator.errors import BackendUnavailable, ProvisioningError
from orchestrator.messages import _, speaking
from orchestrator.paths import store_id


class Resources:
    """The engine's containers, networks, images and volumes of guestlab's labs."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the SDK, turning a vanished engine into BackendUnavailable."""
        try:
            return fn(*args, **kwargs)
        except sdk.errors.APIError:
            raise
        except sdk.errors.DockerException as e:
            raise BackendUnavailable(
                _("{what}: the Docker engine stopped answering ({error})").format(
                    what=what, error=short(e)
                ),
                hint=_(START_FIX),
            ) from None
        except OSError as e:
            raise BackendUnavailable(
                _("{what}: lost the Docker engine ({error})").format(what=what, error=e),
                hint=_(START_FIX),
            ) from None

    def create_network(self, name: str, labels: dict[str, str]) -> None:
        """An internal bridge network (no route beyond the host) named for the firewall."""
        if self.client.networks.list(names=[name]):
            return
        try:
            self.client.networks.create(
                name,
                driver="bridge",
                internal=True,
                labels=labels,
                options={"com.docker.network.bridge.name": bridge_name(CONTAINER_PREFIX, name)},
            )
        except sdk.errors.DockerException as e:
            raise ProvisioningError(
                _("creating the lab's network failed: {error}").format(error=short(e)),
                hint=_(
                    "with many labs, give Docker more address pools:"
                    " `default-address-pools` in /etc/docker/daemon.json"
                    " (scripts/setup/docker.sh writes one)"
                ),
            ) from None

    def subnet(self, network: str) -> str:
        """The subnet the engine gave `network` (its name where the engine says none)."""
        net = self.call("reading network " + network, self.client.networks.get, network)
        ipam = net.attrs.get("IPAM") or {}
        return str((ipam.get("Config") or [{}])[0].get("Subnet", network))

    def has_image(self, ref: str) -> bool:
        """Whether the engine holds the image `ref` (repository:tag)."""
        try:
            self.call("finding image " + ref, self.client.images.get, ref)
        except sdk.errors.ImageNotFound:
            return False
        return True

    def remove_container(self, name: str) -> None:
        """Remove the container `name` and its anonymous volumes, if it exists."""
        with contextlib.suppress(sdk.errors.NotFound):
            self.call("finding " + name, self.client.containers.get, name).remove(
                force=True, v=True
            )

    def labelled(
        self, lab: LabRef | None, also: Sequence[str] = ()
    ) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        label = [f"{LABEL_LAB}={lab.key}"] if lab else [LABEL_LAB, f"{LABEL_STORE}={store_id()}"]
        flt = {"label": [*label, *also]}
        c = self.client
        return (
            c.containers.list(all=True, filters=flt),
            c.networks.list(filters=flt),
            c.images.list(filters=flt),
            c.volumes.list(filters=flt),
        )

    def destroy(self, lab: LabRef, also: Sequence[str] = ()) -> FoundResources:
        found = FoundResources()
        self.wait_out_commits(lab, also)
        containers, networks, images, volumes = self.call(
            "listing the lab's resources", self.labelled, lab, also
        )
        # side by side: each removal is mostly the engine stopping a container's processes
        from concurrent.futures import ThreadPoolExecutor  # here: it loads `logging`

        remove = speaking(lambda ct: _ignore_missing(ct.remove, force=True, v=True))
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(containers)))) as pool:
            list(pool.map(remove, containers))
        found.machines += [ct.labels.get(LABEL_MACHINE, ct.name) for ct in containers]
        for net in networks:
            _ignore_missing(net.remove)
            found.other.append(f"network {net.name}")
        # newest first: a clone's snapshot is a child of the image it was cloned from
        for img in sorted(images, key=lambda i: i.attrs.get("Created", ""), reverse=True):
            try:
                _ignore_missing(self.client.images.remove, img.id, force=True)
            except sdk.errors.APIError as e:
                raise ProvisioningError(
                    _("removing image {short_id} failed: {error}").format(
                        short_id=img.short_id, error=short(e)
                    )
                ) from None
            found.other.append(f"image {', '.join(img.tags) or img.short_id}")
        for vol in volumes:
            _ignore_missing(vol.remove, force=True)
            found.other.append(f"volume {vol.name}")
        return found

    def wait_out_commits(self, lab: LabRef, also: Sequence[str], limit: float = 120) -> None:
        """A killed guestlab may leave the engine committing a machine (it pauses the
        container meanwhile); the image it makes must exist before the lab's are listed."""
        deadline = time.monotonic() + limit
        flt = {"label": [f"{LABEL_LAB}={lab.key}", *also]}
        while time.monotonic() < deadline:
            paused = self.call(
                "listing the lab's machines",
                self.client.containers.list,
                filters={**flt, "status": "paused"},
            )
            if not paused:
                return
            time.sleep(0.2)

    def find(self, lab: LabRef | None, also: Sequence[str] = ()) -> dict[str, FoundResources]:
        containers, networks, images, volumes = self.call(
            "listing resources", self.labelled, lab, also
        )
        out: dict[str, FoundResources] = {}
        for ct in containers:
            key = ct.labels[LABEL_LAB]
            out.setdefault(key, FoundResources()).machines.append(
                ct.labels.get(LABEL_MACHINE, ct.name)
            )
        for kind, items in (("network", networks), ("image", images), ("volume", volumes)):
            for item in items:
                labels = (
                    item.attrs.get("Labels") or item.attrs.get("Config", {}).get("Labels") or {}
                )
                key = labels.get(LABEL_LAB)
                if key:
                    name = getattr(item, "name", None) or item.short_id
                    out.setdefault(key, FoundResources()).other.append(f"{kind} {name}")
        return out


def _ignore_missing(fn: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(sdk.errors.NotFound):  # already gone: removal is idempotent
        fn(*args, **kwargs)
