"""Image references as a command line gives them (``localhost:5000/app:1.0``,
``busybox@sha256:...``): split into name and tag or digest, and the registry they
name.  A ``:`` before the first ``/`` is a registry's port, not a tag."""

HUB = "docker.io"


def split_reference(ref):
    """``name[:tag]`` → (name, tag or None); a ``:`` in a registry host is not a tag,
    and a reference by digest is left whole."""
    if "@" in ref:
        return ref, None
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, None
    return name, tag


def split_image(ref):
    """``name[:tag|@digest]`` → ``(name, tag or digest or None)``."""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return name, digest
    return split_reference(ref)


def registry_of(name):
    """The registry host a repository name is on (Docker Hub when it names none)."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return HUB
