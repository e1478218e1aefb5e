"""The OCI bundle service: what the container service asks of a bundle.

One object holds the host's side of every bundle (the ``--init`` binary bound at
``/sbin/docker-init``) and puts the bundle's pieces together: the checks a create
runs before anything is made, the ``/etc`` files, the namespaces to join, and the
``config.json`` written where the exec driver reads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ...model.container import ContainerRecord
from . import environ, etcfiles, namespaces, security, spec, users

#: --init, as Docker's docker-init
INIT_PATH = shutil.which("tini-static") or "/usr/bin/tini-static"


class Bundles:
    """Makes OCI runtime bundles for container records (``init_path``: the host's
    tini-static, bound at ``/sbin/docker-init`` for ``HostConfig.Init``)."""

    default_shm_size = spec.DEFAULT_SHM_SIZE

    def __init__(self, init_path: str = INIT_PATH) -> None:
        self.init_path = init_path

    def check_extra_hosts(self, host_config: dict) -> None:
        """Refuse bad ``ExtraHosts`` at create, as Docker does (ValueError)."""
        etcfiles.extra_host_lines(host_config.get("ExtraHosts"), "0.0.0.0")

    def extra_hosts(self, host_config: dict, host_gateway: str | None) -> list[str]:
        """``/etc/hosts`` lines of ``ExtraHosts`` (``host-gateway`` is ``host_gateway``)."""
        return etcfiles.extra_host_lines(host_config.get("ExtraHosts"), host_gateway)

    def write_etc_files(self, container_dir: str, hostname: str, network_mode: str, ip: str | None = None,
                        nameservers: list | None = None, extra_hosts: list | tuple = (),
                        dns: dict | None = None) -> dict[str, str]:
        """See :func:`.etcfiles.write_etc_files`."""
        return etcfiles.write_etc_files(container_dir, hostname, network_mode, ip=ip, nameservers=nameservers,
                                        extra_hosts=extra_hosts, dns=dns)

    def namespace_modes(self, host_config: dict) -> dict:
        """See :func:`.namespaces.namespace_modes`."""
        return namespaces.namespace_modes(host_config)

    def make(self, record: ContainerRecord, rootfs: str, etc_paths: dict, ns_paths: dict | None, shm_path: str | None = None,
             volume_mounts: list | None = None) -> dict:
        """The OCI runtime config of ``record`` (see :func:`.spec.make_config`)."""
        return spec.make_config(record, rootfs, etc_paths, ns_paths, init_path=self.init_path,
                                shm_path=shm_path, volume_mounts=volume_mounts)

    def write(self, bundle_dir: str, config: dict) -> str:
        """Write ``config.json`` (0600 in a 0700 directory); returns the bundle's directory."""
        return spec.write_bundle(bundle_dir, config)

    def resolve_user(self, rootfs: str, user: str | None) -> dict:
        """See :func:`.users.resolve_user`."""
        return users.resolve_user(rootfs, user)

    def exec_env(self, process_env: list[str], config_env: list[str], exec_env: list[str], tty: bool,
                 rootfs: str, uid: int) -> list[str]:
        """See :func:`.environ.exec_env`."""
        return environ.exec_env(process_env, config_env, exec_env, tty, rootfs, uid)

    def all_capabilities(self) -> list[str]:
        """What ``--privileged`` gives (see :func:`.security.all_capabilities`)."""
        return security.all_capabilities()

    def init_version(self) -> str:
        """The version of the ``--init`` binary, ``""`` if there is none."""
        if not os.path.isfile(self.init_path):
            return ""
        try:
            out = subprocess.run([self.init_path, "--version"], capture_output=True, timeout=5).stdout.decode()
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.strip().split(" - ")[0].replace("tini version ", "")
