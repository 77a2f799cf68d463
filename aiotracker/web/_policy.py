"""What a service lets its HTTP clients ask for. Pure: no I/O.

A job template from the network is code that runs on the service's engine, and its host
paths are files on the service's host. So by default a client may name only the images the
application allows (``fnmatch`` patterns), and may not ask for any of these unless the
application enables it by name (``allow=``):

- ``binds``: ``stageInFiles`` (bind mounts of host paths into the job);
- ``files``: ``outputPath``, ``errorPath``, ``inputPath``, ``stageOutFiles`` (files the
  tracker writes or reads on the service's host);
- ``privileged``: the ``privileged`` extension set to true;
- ``host_namespaces``: ``net``, ``ipc``, ``pid``, ``uts`` set to ``host`` or to another
  container's (``container:<id>``);
- ``devices``: ``gpus``, ``gpu-devices``;
- ``ports``: ``exposedPorts`` (published ports on the host).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from .._model import JobTemplate
from ._codec import Refused

PERMISSIONS = frozenset({"binds", "files", "privileged", "host_namespaces", "devices", "ports"})


@dataclass(frozen=True, slots=True)
class Policy:
    """The images a client may run and the permissions the application grants."""

    allowed_images: tuple[str, ...] = ()
    allow: frozenset[str] = frozenset()

    @classmethod
    def of(cls, allowed_images: Iterable[str], allow: Iterable[str]) -> Policy:
        images = (allowed_images,) if isinstance(allowed_images, str) else tuple(allowed_images)
        granted = frozenset(allow)
        unknown = sorted(granted - PERMISSIONS)
        if unknown:
            raise ValueError(
                f"unknown permission {unknown[0]!r}; known: {', '.join(sorted(PERMISSIONS))}"
            )
        return cls(images, granted)

    def image_allowed(self, image: str) -> bool:
        return any(fnmatch.fnmatchcase(image, pattern) for pattern in self.allowed_images)

    def check(self, template: JobTemplate) -> None:
        """``Refused`` naming the first thing the template asks for that is not allowed."""
        image = template.job_category
        if not self.image_allowed(image):
            allowed = ", ".join(self.allowed_images) or "none"
            raise Refused(f"image {image!r} is not allowed here (allowed: {allowed})")
        ext = template.extensions
        asked = [
            ("binds", "stageInFiles", bool(template.stage_in_files)),
            ("files", "outputPath", bool(template.output_path)),
            ("files", "errorPath", bool(template.error_path)),
            ("files", "inputPath", bool(template.input_path)),
            ("files", "stageOutFiles", bool(template.stage_out_files)),
            ("privileged", "extension 'privileged'", ext.get("privileged", "false") != "false"),
            ("devices", "extension 'gpus'", "gpus" in ext),
            ("devices", "extension 'gpu-devices'", "gpu-devices" in ext),
            ("ports", "extension 'exposedPorts'", "exposedPorts" in ext),
        ]
        for name in ("net", "ipc", "pid", "uts"):
            value = ext.get(name, "")
            asked.append(
                ("host_namespaces", f"extension {name!r}: {value!r}",
                 value == "host" or value.startswith("container:"))
            )  # fmt: skip
        for permission, what, is_asked in asked:
            if is_asked and permission not in self.allow:
                raise Refused(f"{what} is not allowed here (the service does not grant "
                              f"{permission!r})")  # fmt: skip
