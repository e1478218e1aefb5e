"""The OCI runtime bundle: a container record as the exec driver's ``config.json``.

    service         :class:`Bundles`, what the container service and the builder use
    spec            the whole ``config.json`` of a record, and the checks of a create
    ocispec         Docker's per-field rules: resources, devices, mounts, rlimits
    namespaces      PidMode, IpcMode, UTSMode, CgroupnsMode, NetworkMode
    security        capabilities, security options, sysctls
    users           User and GroupAdd through the image's passwd and group files, HOME
    environ         the environment of a container's process and of an exec
    etcfiles        the container's hostname, hosts and resolv.conf
    seccomp         a seccomp profile (Docker's JSON) as the OCI ``linux.seccomp``
    seccomp_default Docker's default profile

The names below are the bundle's function API (tests, bench and the native
driver's tests build bundles with them).
"""

from .etcfiles import extra_host_lines, write_etc_files
from .namespaces import namespace_modes
from .security import DEFAULT_CAPS, all_capabilities, kernel_capabilities
from .spec import make_config, validate_host_config, write_bundle
from .users import MAX_DB_BYTES, resolve_user

__all__ = ["DEFAULT_CAPS", "MAX_DB_BYTES", "all_capabilities", "extra_host_lines", "kernel_capabilities",
           "make_config", "namespace_modes", "resolve_user", "validate_host_config", "write_bundle",
           "write_etc_files"]
