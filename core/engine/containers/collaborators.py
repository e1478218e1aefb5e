"""What a container's lifecycle needs of the services around it, as Protocols
(:class:`~.lifecycle.Lifecycle` is built with them, never with the engine)."""

from __future__ import annotations

from typing import Protocol

from ...model.container import ContainerRecord


class Layers(Protocol):
    def mount(self, driver_id: str) -> str: ...

    def unmount(self, driver_id: str) -> None: ...

    def remove_rw(self, container_id: str) -> None: ...

    def release(self, top: str | None) -> None: ...


class Logs(Protocol):
    """Of the log service: what the shim writes a container's output with."""

    def writer(self, rec: ContainerRecord) -> dict: ...


class Networks(Protocol):
    """What a running container needs of the network service."""

    def up(self, rec: ContainerRecord) -> dict: ...

    def down(self, rec: ContainerRecord, later: list | None = None) -> None: ...

    def restore(self, rec: ContainerRecord) -> None: ...

    def host_gateway(self) -> str | None: ...


class Bundles(Protocol):
    default_shm_size: int

    def namespace_modes(self, host_config: dict) -> dict: ...

    def extra_hosts(self, host_config: dict, host_gateway: str | None) -> list[str]: ...

    def write_etc_files(self, container_dir: str, hostname: str, network_mode: str, ip: str | None = None,
                        nameservers: list | None = None, extra_hosts: list | tuple = (),
                        dns: dict | None = None) -> dict[str, str]: ...

    def make(self, record: ContainerRecord, rootfs: str, etc_paths: dict, ns_paths: dict | None, shm_path: str | None = None,
             volume_mounts: list | None = None) -> dict: ...

    def write(self, bundle_dir: str, config: dict) -> str: ...
