"""Image references (Docker's grammar) and --change instructions."""

import pytest

from dockyard.engine.images import changes, reference
from dockyard.engine.layers.store import chain_id
from dockyard.errors import InvalidParameter


@pytest.mark.parametrize("ref,want", [
    ("busybox", "busybox:latest"),
    ("docker.io/library/busybox:1.36", "busybox:1.36"),
    ("index.docker.io/team/app", "team/app:latest"),
    ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
    ("example.com/x:v1.0-rc_2", "example.com/x:v1.0-rc_2"),
    ("example.com/x@sha256:" + "ab" * 32, "example.com/x@sha256:" + "ab" * 32),
])
def test_normalize(ref, want):
    assert reference.normalize(ref) == want


@pytest.mark.parametrize("bad", ["", "Busybox", "a:b:c", "x::y", "name:" + "t" * 200, "x@sha256:zz", " busybox"])
def test_bad_references_are_refused_with_the_reference_named(bad):
    with pytest.raises(InvalidParameter) as err:
        reference.normalize(bad)
    assert "invalid reference format" in str(err.value)


def test_changes_apply_like_docker():
    from dockyard.model.image import ContainerConfig

    cfg = changes.apply(ContainerConfig.from_json({"Env": ["A=1"]}), [
        'CMD ["echo", "hi"]', "ENTRYPOINT /bin/sh", "ENV A=2 B=3", "ENV C four five",
        "WORKDIR /srv", "USER nobody", "LABEL k=v", "EXPOSE 80 53/udp", "STOPSIGNAL SIGINT",
    ]).to_json()
    assert cfg["Cmd"] == ["echo", "hi"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/bin/sh"]
    assert cfg["Env"] == ["A=2", "B=3", "C=four five"]
    assert (cfg["WorkingDir"], cfg["User"], cfg["StopSignal"]) == ("/srv", "nobody", "SIGINT")
    assert cfg["Labels"] == {"k": "v"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}


def test_unknown_change_is_refused_naming_the_choices():
    from dockyard.model.image import ContainerConfig

    with pytest.raises(InvalidParameter) as err:
        changes.apply(ContainerConfig(), ["RUN rm -rf /"])
    assert "RUN is not a valid change command" in str(err.value) and "CMD" in str(err.value)


def test_chain_id_follows_oci():
    import hashlib

    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert chain_id(None, a) == a
    assert chain_id(a, b) == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
