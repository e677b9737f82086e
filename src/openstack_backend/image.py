"""The runner image of an OpenStack unit: a Glance image made outside the charm, never built.

Mixed into ``OpenstackRunnerManager``, which says what the image is (``config.image``) and where
the cloud is (``cloud``).
"""

from __future__ import annotations

from errors import OpenstackNotFoundError
from openstack_backend.seam import OpenstackCloud
from runner_manager_type import OpenstackRunnerManagerConfig


class GlanceImageMethods:
    """The image part of the runner manager port, for a cloud's configured image.

    Attributes:
        cloud: The OpenStack cloud.
        config: The manager's configuration (its ``image``).
    """

    cloud: OpenstackCloud
    config: OpenstackRunnerManagerConfig

    def has_runner_image(self) -> bool:
        """Whether the configured image exists in the cloud."""
        try:
            self.cloud.image_id(self.config.image)
        except OpenstackNotFoundError:
            return False
        return True

    def build_runner_image(self) -> None:
        """Build nothing: the image is the configured Glance image, made outside the charm.

        Raises:
            OpenstackNotFoundError: If that image does not exist (with what to do).
        """
        if not self.has_runner_image():
            raise OpenstackNotFoundError(
                f"image {self.config.image!r} is not in the cloud: upload a runner image to "
                "Glance (the charm builds none for OpenStack)",
                404,
                "build_runner_image",
            )

    def schedule_build_runner_image(self) -> None:
        """Schedule nothing: OpenStack runner images are not rebuilt by the charm."""
