#!/usr/bin/env python3
"""Push and pull throughput of one big single-layer image against a local registry,
side by side with real peers, in one run:

    sudo .venv/bin/python bench/registry.py [--reps 3] [--size-mb 200] [--json FILE]

The image: one file of ``--size-mb`` MB (10^6 bytes) of ``os.urandom`` in an
uncompressed tar, so gzip gains nothing and every byte crosses the wire.  The same
tar is imported by every engine (``dockyard import``, ``docker import``,
``podman import``) and is skopeo's source (an OCI layout whose uncompressed layer
blob is that tar).  The registry is Debian's ``docker-registry`` (distribution 2.8)
on 127.0.0.1, plain HTTP (``dockyard.testing.registry.RegistryServer``).

**push** (each tool compresses the layer with gzip while or before it uploads, as
``docker push`` always does): every rep of every tool pushes to a *brand-new
registry* (its own storage directory and port, started and stopped outside the
timing), so no blob is there yet and no HEAD or cross-repository mount can skip
the upload; each tool pushes its own repository name (``push-<tool>``).

* ``dockyard push``: a fresh private daemon per rep (``dockyard.testing.daemon``,
  ``--insecure-registry 127.0.0.1``), the tar imported and tagged untimed; the
  timed push therefore includes gzip-compressing the layer into the content
  store, as a first push does.  The same daemon then pushes again to a second
  fresh registry: that row is the upload alone (the gzip blob it made is reused).
* ``skopeo copy oci:<layout> docker://HOST/push-skopeo --dest-tls-verify=false``.
* ``docker push`` from a private dockerd 20.10 (``bench/engines.py``: own roots and
  socket, no bridge, no iptables rules; ``--insecure-registry 127.0.0.0/8``).
* ``podman push --tls-verify=false`` from a private ``--root``.

**pull**: one registry, filled once (untimed) by skopeo with a Docker schema 2
image (``--format v2s2``), copied to one repository per tool (``pull-<tool>``), so
every tool downloads the very same gzip blob.  Before each timed pull the layer is
checked to be absent from the puller's stores, and after it the tool's output and
stores are checked to show that the blob really was downloaded:

* ``dockyard pull`` into a fresh daemon (fresh data root) per rep: download,
  gunzip, diff ID check, layer registered in the storage driver;
* ``docker pull`` (then ``docker rmi``; the layer must be gone from dockerd's
  layer DB before the next rep; the imported push image is removed before the
  pulls): download, extraction;
* ``podman pull --tls-verify=false`` into a fresh ``--root`` per rep;
* ``skopeo copy docker://... dir:<fresh dir>``: download and digest check only,
  no decompression or extraction (a floor: what the registry and the loopback
  give).

Times are wall clock of the whole client command (its start-up included).  MB/s =
the layer blob's size as the registry's manifest gives it (gzip of the random
tar, so a little over ``--size-mb``) / 10^6 / seconds; the table shows the median
of ``--reps`` reps, the min and max, and the median over Dockyard's (``x dockyard``
> 1: faster than Dockyard).  The tools take turns (round robin) in each rep; there
is no warm-up rep (200 MB a time); ``sync`` runs before each timed command, so that
no tool pays for the previous one's dirty pages.  Everything (registries, daemons, roots, temp
files) lives in one workspace and is removed at the end.  Needs root.
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import sys
import tarfile
import time
import urllib.error
import urllib.request

import common
import engines
from common import NotAvailable, need, run_cmd

PUSH, PULL = "push: to a brand-new registry per rep", "pull: the same gzip blob, into empty stores"
TIMEOUT = 900
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def sha256_file(path):
    import hashlib

    with open(path, "rb") as fh:
        return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()


def manifest(host, repo, tag="latest"):
    """The registry's manifest of ``repo:tag`` (plain HTTP on 127.0.0.1)."""
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def blob_exists(host, repo, digest):
    req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/{digest}", method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def timed(cmd, env=None):
    os.sync()  # the previous step's dirty pages are not this one's to write back
    start = time.perf_counter()
    res = run_cmd(cmd, timeout=TIMEOUT, env=env)
    return time.perf_counter() - start, res


class Bench:
    def __init__(self, args, ws):
        self.args, self.ws = args, ws
        self.notes, self.results = [], {PUSH: {}, PULL: {}}
        self.seconds = {PUSH: {}, PULL: {}}  # label -> [s], for --json
        self.sizes = {}  # label -> blob bytes (what MB/s divides)
        self.n = 0  # registries made

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    # --- the image --------------------------------------------------------------------
    def make_payload(self):
        size = self.args.size_mb * 10 ** 6
        d = self.ws.tmp / "payload"
        d.mkdir()
        blob = d / "random.bin"
        with open(blob, "wb") as fh:
            left = size
            while left:
                n = min(left, 4 << 20)
                fh.write(os.urandom(n))
                left -= n
        self.tar = d / "payload.tar"
        with tarfile.open(self.tar, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tar.gettarinfo(str(blob), arcname="random.bin")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 1_700_000_000, 0, 0, "", ""
            with open(blob, "rb") as fh:
                tar.addfile(info, fh)
        blob.unlink()
        self.diff_id = sha256_file(self.tar)
        self.layout = self.oci_layout(d / "oci")
        self.note(f"image: one file of {size / 1e6:.0f} MB from os.urandom in a {self.tar.stat().st_size} byte "
                  f"tar, diff ID {self.diff_id[:19]}...")

    def oci_layout(self, root):
        """An OCI layout (skopeo's push source) whose layer blob is the uncompressed tar."""
        blobs = root / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        os.link(self.tar, blobs / self.diff_id[7:])
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [self.diff_id]},
                             "history": [{"created_by": "bench/registry.py"}]}).encode()

        def put(data):
            import hashlib

            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            (blobs / digest[7:]).write_bytes(data)
            return {"digest": digest, "size": len(data)}
        man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
                          "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                      "digest": self.diff_id, "size": self.tar.stat().st_size}]}).encode()
        index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                    **put(man), "annotations": {
                                                        "org.opencontainers.image.ref.name": "payload"}}]}
        (root / "index.json").write_text(json.dumps(index))
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        return root

    # --- registries and daemons ----------------------------------------------------------
    def registry(self, what):
        from dockyard.testing.registry import RegistryServer

        self.n += 1
        reg = RegistryServer(self.ws.tmp / f"registry-{self.n}-{what}")
        self.ws.on_cleanup(f"stopping registry {reg.base.name}", reg.stop)
        try:
            reg.start()
        except (RuntimeError, OSError) as exc:
            raise NotAvailable(f"docker-registry: {common.last_line(str(exc))}") from None
        if reg.catalog().get("repositories"):
            raise NotAvailable(f"registry {reg.host} is not empty")
        return reg

    @staticmethod
    def drop_registry(reg):
        reg.stop()
        shutil.rmtree(reg.base, ignore_errors=True)

    def dockyard(self, name):
        from dockyard.testing.daemon import Daemon

        d = Daemon(self.ws.tmp / name, extra_args=["--insecure-registry", "127.0.0.1"],
                   cgroup_parent=self.ws.cgroup(name))
        self.ws.on_cleanup(f"removing {name}'s bridge and nft table", d.remove_network_objects)
        self.ws.on_cleanup(f"stopping {name}", d.stop)
        try:
            d.start()
        except RuntimeError as exc:
            raise NotAvailable(f"dockyard daemon: {common.last_line(str(exc))}") from None
        return d

    def drop_dockyard(self, d):
        d.stop()
        d.remove_network_objects()
        leaks = d.leaks()
        if leaks:
            self.note(f"LEFT BEHIND by {d.base.name}: {'; '.join(leaks)}")
        shutil.rmtree(d.base, ignore_errors=True)

    @staticmethod
    def dy(d, *args):
        """``dockyard ARGS`` against ``d``; (seconds, stdout)."""
        os.sync()
        start = time.perf_counter()
        res = d.cli(*args, timeout=TIMEOUT)
        took = time.perf_counter() - start
        if res.returncode != 0:
            raise NotAvailable(f"dockyard {args[0]} exited {res.returncode}: "
                               f"{common.last_line(res.stderr.decode(errors='replace') or res.stdout.decode())}")
        return took, res.stdout.decode(errors="replace")

    def pushed(self, label, reg, repo, secs):
        """Check what ``repo`` got; record the rep (blob size / seconds)."""
        layers = manifest(reg.host, repo)["layers"]
        if len(layers) != 1 or not blob_exists(reg.host, repo, layers[0]["digest"]):
            raise NotAvailable(f"{repo}: the registry does not hold the one layer after the push")
        self.sizes.setdefault(label, layers[0]["size"])
        if label not in self.seconds[PUSH]:
            self.note(f"{label}: layer blob {layers[0]['size']} bytes, {layers[0]['mediaType']}")
        return label, secs, layers[0]["size"]

    # --- push ---------------------------------------------------------------------------
    def push_dockyard(self):
        def rep(i):
            d = self.dockyard(f"dy-push-{i}")
            try:
                self.dy(d, "import", str(self.tar), "payload:latest")
                out = []
                for label in ("dockyard push", "dockyard push, gzip blob already made"):
                    reg = self.registry("dy")
                    ref = f"{reg.host}/push-dockyard:latest"
                    self.dy(d, "tag", "payload:latest", ref)
                    secs, text = self.dy(d, "push", ref)
                    if "Pushed" not in text:
                        raise NotAvailable(f"dockyard push did not upload the layer: {common.last_line(text)}")
                    out.append(self.pushed(label, reg, "push-dockyard", secs))
                    self.drop_registry(reg)
                return out
            finally:
                self.drop_dockyard(d)
        return rep

    def push_skopeo(self):
        exe = need("skopeo")
        self.note(f"skopeo: {common.version([exe, '--version'])}")

        def rep(i):
            reg = self.registry("skopeo")
            secs, _ = timed([exe, "copy", "-q", "--dest-tls-verify=false", f"oci:{self.layout}:payload",
                             f"docker://{reg.host}/push-skopeo:latest"])
            try:
                return [self.pushed("skopeo copy oci: -> docker://", reg, "push-skopeo", secs)]
            finally:
                self.drop_registry(reg)
        return rep

    def push_docker(self):
        self.docker = engines.Dockerd(self.ws, extra_args=["--insecure-registry", "127.0.0.0/8"]).start(self.tar)
        self.note(f"docker: CLI {common.version([need('docker'), '--version'])}, dockerd "
                  f"{self.docker.run('version', '--format', '{{.Server.Version}}')} (private roots, storage "
                  f"{self.docker.run('info', '--format', '{{.Driver}}')}, no bridge, no iptables rules, "
                  "--insecure-registry 127.0.0.0/8)")

        def rep(i):
            reg = self.registry("docker")
            ref = f"{reg.host}/push-docker:latest"
            try:
                self.docker.run("tag", self.docker.image, ref)
                secs, res = timed(self.docker.cli("push", ref), env=self.docker.env)
                if "Pushed" not in res.stdout:
                    raise NotAvailable(f"docker push did not upload the layer: {common.last_line(res.stdout)}")
                self.docker.run("rmi", ref)  # the tag only
                return [self.pushed("docker push", reg, "push-docker", secs)]
            finally:
                self.drop_registry(reg)
        return rep

    def push_podman(self):
        self.podman = engines.Podman(self.ws).start(self.tar)
        self.note(f"podman: {common.version([need('podman'), '--version'])}, private --root per use, "
                  f"storage {self.podman.run('info', '--format', '{{.Store.GraphDriverName}}')}")

        def rep(i):
            reg = self.registry("podman")
            try:
                secs, _ = timed(self.podman.cli("push", "--tls-verify=false", self.podman.image,
                                                f"docker://{reg.host}/push-podman:latest"))
                return [self.pushed("podman push", reg, "push-podman", secs)]
            finally:
                self.drop_registry(reg)
        return rep

    # --- pull ---------------------------------------------------------------------------
    def fill_pull_registry(self):
        """One registry with the same Docker schema 2 image in ``pull-<tool>`` repos."""
        self.reg = self.registry("pull")
        exe = need("skopeo")
        host = self.reg.host
        run_cmd([exe, "copy", "-q", "--dest-tls-verify=false", "--format", "v2s2", f"oci:{self.layout}:payload",
                 f"docker://{host}/seed:latest"], timeout=TIMEOUT)
        for tool in ("dockyard", "docker", "podman", "skopeo"):
            run_cmd([exe, "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                     f"docker://{host}/seed:latest", f"docker://{host}/pull-{tool}:latest"], timeout=TIMEOUT)
        layers = manifest(host, "pull-dockyard")["layers"]
        self.pull_blob = layers[0]
        for tool in ("docker", "podman", "skopeo"):
            if manifest(host, f"pull-{tool}")["layers"] != layers:
                raise NotAvailable(f"pull-{tool} does not hold the same layer as pull-dockyard")
        self.note(f"pull: registry {host} filled once by skopeo (--format v2s2), one repo per tool; layer blob "
                  f"{self.pull_blob['size']} bytes, {self.pull_blob['mediaType']}, {self.pull_blob['digest'][:19]}...")

    def pull_dockyard(self):
        blob, label = self.pull_blob, "dockyard pull"

        def rep(i):
            d = self.dockyard(f"dy-pull-{i}")
            try:
                held = d.data_root / "content" / "blobs" / "sha256" / blob["digest"][7:]
                if held.exists():
                    raise NotAvailable(f"the fresh daemon already holds {blob['digest']}")
                secs, text = self.dy(d, "pull", f"{self.reg.host}/pull-dockyard:latest")
                if "Download complete" not in text or "Already exists" in text or not held.exists():
                    raise NotAvailable(f"dockyard pull did not download the layer: {text[-300:]!r}")
                return [(label, secs, blob["size"])]
            finally:
                self.drop_dockyard(d)
        return rep

    def docker_has_layer(self):
        return bool(glob.glob(str(self.docker.base / "data" / "image" / "*" / "layerdb" / "sha256" /
                                  self.diff_id[7:])))

    def pull_docker(self):
        if not hasattr(self, "docker"):
            raise NotAvailable(getattr(self, "docker_na", "dockerd did not start"))
        self.docker.run("rmi", self.docker.image)  # the pushes' image shares the layer
        blob, label = self.pull_blob, "docker pull"
        ref = f"{self.reg.host}/pull-docker:latest"

        def rep(i):
            if self.docker_has_layer():
                raise NotAvailable("dockerd still holds the layer before the pull")
            secs, res = timed(self.docker.cli("pull", ref), env=self.docker.env)
            if "Pull complete" not in res.stdout or "Already exists" in res.stdout or not self.docker_has_layer():
                raise NotAvailable(f"docker pull did not download the layer: {res.stdout[-300:]!r}")
            self.docker.run("rmi", ref)
            return [(label, secs, blob["size"])]
        return rep

    def pull_podman(self):
        need("podman")
        blob, label = self.pull_blob, "podman pull"

        def rep(i):
            p = engines.Podman(self.ws, name=f"podman-pull-{i}")
            p.base.mkdir()
            p.used = True
            self.ws.on_cleanup(f"removing podman-pull-{i}'s image", p.stop)
            try:
                secs, res = timed(p.cli("pull", "--tls-verify=false", f"{self.reg.host}/pull-podman:latest"))
                said = res.stdout + res.stderr
                if "skipped" in said or blob["digest"][7:19] not in said:
                    raise NotAvailable(f"podman pull did not download the layer: {said[-300:]!r}")
                return [(label, secs, blob["size"])]
            finally:
                p.stop()
                if not common.mounts_under(p.base):
                    shutil.rmtree(p.base, ignore_errors=True)
        return rep

    def pull_skopeo(self):
        exe = need("skopeo")
        blob, label = self.pull_blob, "skopeo copy docker:// -> dir: (no extraction)"

        def rep(i):
            dest = self.ws.tmp / f"skopeo-pull-{i}"
            try:
                secs, _ = timed([exe, "copy", "-q", "--src-tls-verify=false",
                                 f"docker://{self.reg.host}/pull-skopeo:latest", f"dir:{dest}"])
                got = dest / blob["digest"][7:]
                if not got.exists() or got.stat().st_size != blob["size"]:
                    raise NotAvailable(f"skopeo did not write the layer blob {blob['digest']}")
                return [(label, secs, blob["size"])]
            finally:
                shutil.rmtree(dest, ignore_errors=True)
        return rep

    # --- the run --------------------------------------------------------------------------
    def section(self, title, tools):
        """Prepare ``tools`` ([(labels, prepare)]), then ``--reps`` round-robin reps."""
        result, live = self.results[title], []
        for labels, prepare in tools:
            try:
                fn = prepare()
            except Exception as exc:  # NotAvailable, or an engine's error: reported, not hidden
                why = f"n/a: {exc}" if isinstance(exc, NotAvailable) else f"n/a: {exc!r}"
                for label in labels:
                    result[label] = why
            else:
                for label in labels:
                    result[label] = []
                live.append((labels, fn))
            print(f"  {title} / {', '.join(labels)}: {'ready' if result[labels[0]] == [] else result[labels[0]]}",
                  file=sys.stderr)
        for i in range(self.args.reps):
            for labels, fn in live:
                if not isinstance(result[labels[0]], list):
                    continue
                try:
                    out = fn(i)
                except Exception as exc:
                    for label in labels:
                        result[label] = f"n/a: failed on rep {i + 1}: {exc}"
                    continue
                for label, secs, size in out:
                    self.seconds[title].setdefault(label, []).append(secs)
                    result[label].append(size / 1e6 / secs)
                    print(f"  {title} / {label} rep {i + 1}: {secs:.2f} s, {size / 1e6 / secs:.1f} MB/s",
                          file=sys.stderr)

    def run(self):
        self.notes.append(f"before: {common.load_line()}")
        self.make_payload()

        def docker():
            try:
                return self.push_docker()
            except NotAvailable as exc:
                self.docker_na = str(exc)
                raise
        self.section(PUSH, [(("dockyard push", "dockyard push, gzip blob already made"), self.push_dockyard),
                            (("skopeo copy oci: -> docker://",), self.push_skopeo),
                            (("docker push",), docker),
                            (("podman push",), self.push_podman)])
        try:
            self.fill_pull_registry()
        except NotAvailable as exc:
            for label in ("dockyard pull", "skopeo copy docker:// -> dir: (no extraction)", "docker pull",
                          "podman pull"):
                self.results[PULL][label] = f"n/a: filling the pull registry: {exc}"
        else:
            self.section(PULL, [(("dockyard pull",), self.pull_dockyard),
                                (("skopeo copy docker:// -> dir: (no extraction)",), self.pull_skopeo),
                                (("docker pull",), self.pull_docker),
                                (("podman pull",), self.pull_podman)])
        self.notes.append(f"after: {common.load_line()}")

    def table(self):
        sections = []
        for title, result in self.results.items():
            base = next(iter(result.values()), None)  # the section's first row: Dockyard
            base = statistics.median(base) if isinstance(base, list) and base else None
            rows = []
            for label, values in result.items():
                if isinstance(values, list) and values:
                    med = statistics.median(values)
                    secs = statistics.median(self.seconds[title][label])
                    rows.append((label, [f"{med:.1f}", f"{min(values):.1f}-{max(values):.1f}", f"{secs:.2f}",
                                         f"{med / base:.2f}" if base else "-"]))
                else:
                    rows.append((label, values if isinstance(values, str) else "n/a: no reps"))
            sections.append((title, rows))
        title = (f"registry throughput, {self.args.size_mb} MB random single-layer image: {self.args.reps} reps each, "
                 "round robin; MB/s = layer blob bytes / 10^6 / wall-clock seconds of the client command; "
                 "x dockyard = median MB/s / Dockyard's (>1: faster)")
        return common.format_table(title, ("tool", "median MB/s", "min-max", "median s", "x dockyard"), sections)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="measured pushes and pulls per tool (default 3)")
    p.add_argument("--size-mb", type=int, default=200, help="random payload in MB of 10^6 bytes (default 200)")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers (MB/s) as JSON")
    args = p.parse_args(argv)
    if args.reps < 1 or args.size_mb < 1:
        p.error("--reps and --size-mb must be at least 1")
    extra = {"reps": args.reps, "size_mb": args.size_mb}

    def make(a, ws):
        bench = Bench(a, ws)
        extra["seconds"] = bench.seconds
        return bench
    return common.run_bench("registry.py", args, make, f"{args.reps} reps of {args.size_mb} MB", extra)


if __name__ == "__main__":
    sys.exit(main())
