"""The Docker backend's base images: one imported per catalog or imported image, tagged
under guestlab's repository; machines are made from them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.backends.common import engine_errors
from orchestrator.backends.contract import Progress
from orchestrator.backends.docker import sdk
from orchestrator.backends.docker.engine import image_ref
from orchestrator.errors import ProvisioningError, UsageError
from orchestrator.messages import _

if TYPE_CHECKING:
    import docker

    from orchestrator.backends.docker.resources import Resources


class DockerImages:
    """The image methods of DockerBackend, which gives them its client and resources."""

    if TYPE_CHECKING:

        @property
        def client(self) -> docker.DockerClient: ...

        @property
        def resources(self) -> Resources: ...

    def has_image(self, image: str) -> bool:
        return self.resources.has_image(image_ref(image))

    def ensure_image(
        self, image: str, progress: Progress, *, build: bool = True, mirror: str | None = None
    ) -> None:
        if self.has_image(image):
            return
        if not build:
            raise UsageError(
                _("the image `{image}` is not in the Docker engine").format(image=image),
                hint=_("build it: guestlab image build {image} --backend docker").format(
                    image=image
                ),
            )
        from orchestrator.images.rootfs import ensure_tarball  # building: rare

        self.import_image(image, ensure_tarball(image, mirror=mirror, progress=progress), progress)

    def import_image(self, image: str, tarball: Path, progress: Progress) -> None:
        progress(_("importing {image} into Docker").format(image=image))
        repo, tag = image_ref(image).rsplit(":", 1)
        with engine_errors(
            _("importing {image} into Docker").format(image=image), sdk.errors.DockerException
        ):
            self.client.api.import_image(
                src=str(tarball),
                repository=repo,
                tag=tag,
                changes=[f"LABEL guestlab.image={image}", 'CMD ["/lib/systemd/systemd"]'],
            )
        if not self.has_image(image):
            raise ProvisioningError(
                _("Docker did not keep the imported image {image}").format(image=image)
            )

    def remove_image(self, image: str) -> bool:
        if not self.has_image(image):
            return False
        with engine_errors(
            _("removing the image {image} from Docker").format(image=image),
            sdk.errors.DockerException,
        ):
            # untag only (no force): containers made from it keep their layers
            self.client.images.remove(image_ref(image), noprune=False)
        return True
