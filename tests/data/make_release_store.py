"""Make ``tests/data/store-1``: a Dockyard database written by a release, and what
that release's API served from it, so the schema tests can migrate it and compare.

Run it with the *release's* interpreter (its ``dockyard`` is the one whose
database we keep), as root, from the repository::

    /work/release/.venv/bin/python tests/data/make_release_store.py [OUTDIR]

It starts a private daemon of that release on a temporary data root (the busybox
image is made offline from Debian's busybox-static, as tests/conftest.py does),
makes images, containers, networks and volumes of the kinds a user has, records
the API's answers in ``api.json``, stops the daemon and writes the database as
SQL text (``dump.sql``, sqlite's ``.dump``; small and readable in a review).
Then it starts the daemon again to remove what it made, and the temporary root.

The ids, times and paths in the files differ from run to run; the names do not
(every object is made with one), and ``api.json`` is keyed by them.  Its
``roots`` say where the data root, exec root, bind source and default bridge
were, so that a test can map the paths to its own.
"""

import io
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from dockyard.testing.busybox import make_busybox_tar
from dockyard.testing.daemon import Daemon

HERE = Path(__file__).resolve().parent
DOCKERFILE = b"""FROM busybox
ENV BUILT=yes
RUN echo built > /built.txt
LABEL stage=release
CMD ["cat", "/built.txt"]
"""
SLEEP = ["sleep", "3600"]


def populate(client, tmp):
    """Every kind of record the release stores: images (imported, built), volumes,
    networks, containers (created, running, exited, on a user network, none,
    container:<other>)."""
    api = client.api
    # images: busybox is imported by the caller; one built, so that there is build cache
    client.images.build(fileobj=io.BytesIO(DOCKERFILE), tag="built:1", rm=True)
    # volumes
    client.volumes.create("data", labels={"tier": "db"})
    client.volumes.create("plain")
    # networks
    client.networks.create("backend", driver="bridge", internal=True,
                           ipam={"Driver": "default",
                                 "Config": [{"Subnet": "10.213.7.0/24", "Gateway": "10.213.7.1"}]})
    client.networks.create("front", driver="bridge", labels={"team": "web"},
                           options={"com.docker.network.bridge.enable_icc": "true",
                                    "com.docker.network.driver.mtu": "1400"},
                           ipam={"Driver": "default",
                                 "Config": [{"Subnet": "10.213.8.0/24", "Gateway": "10.213.8.1",
                                             "IPRange": "10.213.8.128/25"}]})
    bind = tmp / "bind"
    bind.mkdir()
    (bind / "hello.txt").write_text("hello\n")
    # created, never started
    client.containers.create("busybox", ["echo", "never"], name="fresh", labels={"kind": "created"})
    # running: restart policy, healthcheck, env, labels, named volume, bind, tmpfs, published port
    client.containers.run(
        "busybox", SLEEP, name="web", detach=True, restart_policy={"Name": "unless-stopped"},
        healthcheck={"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Timeout": 1_000_000_000,
                     "Retries": 3},
        environment={"MODE": "release", "EMPTY": ""}, labels={"kind": "running", "app": "web"},
        volumes={"data": {"bind": "/data", "mode": "rw"}, str(bind): {"bind": "/mnt/bind", "mode": "ro"}},
        tmpfs={"/scratch": "size=1m"}, ports={"80/tcp": ("127.0.0.1", 18080)},
        hostname="webhost", working_dir="/tmp")
    # exited with a code
    done = client.containers.run("busybox", ["sh", "-c", "echo bye; exit 3"], name="done", detach=True,
                                 labels={"kind": "exited"})
    assert done.wait(timeout=30)["StatusCode"] == 3
    # on a user network, with an alias and a static IP
    c = api.create_container(
        "busybox", SLEEP, name="db", labels={"kind": "user-network"},
        host_config=api.create_host_config(network_mode="front"),
        networking_config=api.create_networking_config(
            {"front": api.create_endpoint_config(aliases=["database"], ipv4_address="10.213.8.200")}))
    api.start(c["Id"])
    api.connect_container_to_network(c["Id"], "backend", aliases=["db-internal"])
    # no network; and one in another's network namespace
    client.containers.run("busybox", SLEEP, name="loner", detach=True, network_mode="none")
    client.containers.run("busybox", SLEEP, name="sidecar", detach=True, network_mode="container:web")
    # for the health check to have run at least once
    deadline = time.monotonic() + 20
    while api.inspect_container("web")["State"].get("Health", {}).get("Status") != "healthy":
        assert time.monotonic() < deadline, "web never became healthy"
        time.sleep(0.2)


def record(client):
    """What the release's API served: a list, and each object's inspect, by name."""
    api = client.api
    containers = api.containers(all=True)
    networks = api.networks()
    images = api.images()
    return {
        "containers_json": containers,
        "containers": {c["Names"][0].lstrip("/"): api.inspect_container(c["Id"]) for c in containers},
        "networks_json": networks,
        "networks": {n["Name"]: api.inspect_network(n["Id"]) for n in networks},
        "volumes": api.volumes(),
        "images_json": images,
        "images": {(i["RepoTags"] or [i["Id"]])[0]: api.inspect_image(i["Id"]) for i in images},
    }


def dump(db_path):
    """The database as SQL text, one statement a line (sqlite's ``.dump``)."""
    con = sqlite3.connect(db_path)
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        lines = list(con.iterdump())
    finally:
        con.close()
    return f"-- dockyard.db of a release (PRAGMA user_version = {version})\n" + "\n".join(lines) + "\n"


def clean(d):
    """Start the daemon again and remove everything it has, then its roots."""
    d.start()
    client = d.sdk()
    try:
        for c in client.containers.list(all=True):
            c.remove(force=True)
        for n in client.networks.list():
            if n.name not in ("bridge", "host", "none"):
                n.remove()
        client.volumes.prune()
        for v in client.volumes.list():
            v.remove(force=True)
    finally:
        client.close()
        d.stop()
        d.remove_network_objects()


def main(argv):
    out = Path(argv[1]) if len(argv) > 1 else HERE / "store-1"
    if os.geteuid() != 0:
        sys.exit("make_release_store.py: the daemon needs root")
    tmp = Path(tempfile.mkdtemp(prefix="dyrel"))
    d = Daemon(tmp / "d")
    try:
        d.start()
        d.cli("import", str(make_busybox_tar(tmp / "busybox.tar")), "busybox", check=True)
        client = d.sdk()
        try:
            populate(client, tmp)
            api = record(client)
            # the paths in the records and in what was served are under these
            api["roots"] = {"data_root": str(d.data_root), "exec_root": str(d.exec_root),
                            "bind": str(tmp / "bind"), "bridge": d.bridge, "nft_table": d.nft_table}
        finally:
            client.close()
        d.stop()
        out.mkdir(parents=True, exist_ok=True)
        (out / "dump.sql").write_text(dump(d.data_root / "dockyard.db"))
        (out / "api.json").write_text(json.dumps(api, indent=1, sort_keys=True) + "\n")
    finally:
        try:
            d.stop()
            clean(d)
        finally:
            leaks = d.leaks()
            shutil.rmtree(tmp, ignore_errors=True)
    if leaks:
        sys.exit("make_release_store.py: left behind: " + ", ".join(leaks))
    print(out)


if __name__ == "__main__":
    main(sys.argv)
