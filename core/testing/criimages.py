"""Offline stand-ins of the images Kubernetes' CRI validation suite (critest) pulls.

critest (cri-tools v1.26.1, ``pkg/validate``) pulls ``registry.k8s.io/e2e-test-images/...``
and ``gcr.io/k8s-staging-cri-tools/...`` and checks properties of them: users and
groups, tags, a process named nginx with "master process" in its command line, an
Apache start-up line, a setuid helper, web servers on port 80.  Our machines reach no
registry but PyPI's and Debian's, so this module makes look-alikes of every one of
them and pushes them to a local registry under the same repository names; a runtime
then pulls them through per-host mirrors (``--registry-mirror registry.k8s.io=URL``).

    images = build_images()                 # {"registry.k8s.io/e2e-test-images/busybox:1.29-2": Image, ...}
    push_images(reg.url, images)            # every repository and tag, on the registry's own names
    mirror_args(reg.url)                    # ["--registry-mirror", "registry.k8s.io=http://...", ...]

The base layer is Debian's *dynamic* ``busybox`` (its .deb, from the apt cache or
``apt-get download``) with one hard link per applet and the shared libraries it needs
copied from the host: Debian's static busybox runs applets inside the shell, so a
masked ``/bin/ls`` would still run and the MaskedPaths spec (which wants
``/bin/sh: ls: Permission denied``) could not pass.  busybox lacks ``ipcs`` and
``pgrep``, which specs run: util-linux's and procps' are copied the same way.

The setuid helper of ``nonewprivs`` is a 229-byte ELF written here (:data:`_NNP_CODE`),
so no compiler is needed.  The one image the stand-ins cannot replace is the one
critest pins by an upstream digest: :data:`SKIPS`.

``python -m dockyard.testing.criimages push URL`` pushes them to a running registry.
"""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .registry_content import DOCKER_MANIFEST, Image, compress, digest, put_blob, put_manifest

E2E = "registry.k8s.io/e2e-test-images/"
STAGING = "gcr.io/k8s-staging-cri-tools/"
#: the sandbox image containerd's CRI plugin (the reference runtime) pulls; our CRI makes
#: its own pause image (dockyard.cri.config.PAUSE_IMAGE) and never pulls this one
PAUSE = "registry.k8s.io/pause:3.6"
#: the registry hosts critest's images name: each needs a mirror
MIRROR_HOSTS = ("registry.k8s.io", "gcr.io")

#: the specs that cannot pass offline (``--ginkgo.skip`` regexes), with the reason
SKIPS = {
    r"public image with digest should be pulled and removed":
        "it pulls gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2...: a digest of "
        "upstream content, which no offline stand-in can have",
}

_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MTIME = 1_600_000_000
_CACHE = Path(os.environ.get("DOCKYARD_CRI_IMAGE_CACHE", "/var/cache/dockyard-cri-images"))

_PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
_GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
www-data:x:33:
nogroup:x:65534:
"""

# The nonewprivs helper (Kubernetes' test/images/nonewprivs prints its effective uid):
#   mov eax,107; syscall                      geteuid()
#   digits of eax, backwards below rsp, then a newline; "Effective uid: " before them (rep movsb)
#   write(1, buf, len); exit(0)
# assembled with GNU as (intel syntax) from the 30 instructions above; position independent.
_NNP_CODE = bytes.fromhex(
    "b86b0000000f05b90a000000488d7424ffc6060a31d2f7f180c23048ffce881685c075f04889e24829f24883ee0f"
    "4883c20f4989f04889f7488d351f000000b90f000000f3a4b801000000bf010000004c89c60f05b83c00000031ff"
    "0f05456666656374697665207569643a20")


def nnp_elf() -> bytes:
    """A static x86-64 ELF executable of :data:`_NNP_CODE`: one PT_LOAD segment (R+X)
    holding the headers and the code, entry right after the headers."""
    base, hdr = 0x400000, 64 + 56
    size = hdr + len(_NNP_CODE)
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 62, 1, base + hdr, 64, 0, 0,
                       64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return ehdr + phdr + _NNP_CODE


_NGINX = """#!/bin/sh
# A stand-in of nginx for critest (dockyard.testing.criimages): a process named nginx
# (the kernel names a script's process after the script) whose command line says
# "master process", whose pid is in /var/run/nginx.pid, serving port ${NGINX_PORT:-80}.
[ "$1" = "master process" ] || exec "$0" "master process" "$@"
echo $$ > /var/run/nginx.pid
trap 'kill $child 2>/dev/null; exit 0' TERM INT QUIT
httpd -f -p "${NGINX_PORT:-80}" -h /usr/share/nginx/html &
child=$!
wait $child
"""

_HTTPD = """#!/bin/sh
# A stand-in of Apache's httpd-foreground for critest (dockyard.testing.criimages):
# Apache's start-up lines on stderr, then busybox's httpd on port 80.
echo "[mpm_event:notice] [pid $$] AH00489: Apache/2.4.39 (Unix) configured -- resuming normal operations" >&2
echo "[core:notice] [pid $$] AH00094: Command line: 'httpd -D FOREGROUND'" >&2
exec httpd -f -p 80 -h /usr/local/apache2/htdocs
"""


# --- layers --------------------------------------------------------------------------------------------
class _Layer:
    """An uncompressed layer tar being written, entries in the order added."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.seen = set()

    def _info(self, path, kind, mode):
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type, info.mode, info.mtime = kind, mode, _MTIME
        return info

    def dir(self, path, mode=0o755):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in self.seen:
                self.seen.add(p)
                self.tar.addfile(self._info(p, tarfile.DIRTYPE, mode if i == len(parts) else 0o755))

    def file(self, path, data, mode=0o644):
        self.dir(os.path.dirname(path.strip("/")))
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))
        self.seen.add(path.strip("/"))

    def link(self, path, target, hard=False):
        self.dir(os.path.dirname(path.strip("/")))
        info = self._info(path, tarfile.LNKTYPE if hard else tarfile.SYMTYPE, 0o777)
        info.linkname = target.lstrip("/") if hard else target
        self.tar.addfile(info)
        self.seen.add(path.strip("/"))

    def host_binary(self, host_path, path=None):
        """The host's ``host_path`` at ``path`` with the shared libraries ``ldd`` names,
        each at the path it has on the host."""
        self.file(path or host_path, Path(host_path).read_bytes(), 0o755)
        for lib in _libraries(host_path):
            if lib.lstrip("/") not in self.seen:
                self.file(lib, Path(os.path.realpath(lib)).read_bytes(), 0o755)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def _libraries(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        fields = line.split()
        if "=>" in fields and len(fields) > fields.index("=>") + 1 and fields[fields.index("=>") + 1].startswith("/"):
            libs.append(fields[fields.index("=>") + 1])
        elif fields and fields[0].startswith("/"):
            libs.append(fields[0])  # the dynamic loader
    return libs


def busybox_deb(cache=_CACHE):
    """Debian's dynamic busybox package: from apt's cache, else ``apt-get download``."""
    found = sorted(glob.glob("/var/cache/apt/archives/busybox_*.deb")) + sorted(glob.glob(f"{cache}/busybox_*.deb"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["apt-get", "download", "busybox"], cwd=cache, capture_output=True, text=True)
    found = sorted(glob.glob(f"{cache}/busybox_*.deb"))
    if res.returncode != 0 or not found:
        raise RuntimeError(f"apt-get download busybox failed: {res.stderr.strip()}")
    return found[-1]


def busybox_layer(deb=None):
    """The base layer of every stand-in: dynamic busybox with its applets as hard links
    in /bin, its libraries, ``ipcs`` and ``pgrep``, and a busybox image's /etc."""
    layer = _Layer()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", deb or busybox_deb(), tmp], check=True)
        busybox = os.path.join(tmp, "bin/busybox")
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for d in ("dev", "proc", "sys", "root", "home", "var/www", "var/run", "usr/sbin", "usr/bin", "etc"):
            layer.dir(d, 0o700 if d == "root" else 0o755)
        layer.dir("tmp", 0o1777)
        layer.host_binary(busybox, "/bin/busybox")
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            layer.link(f"/bin/{applet}", "/bin/busybox", hard=True)
    layer.host_binary(shutil.which("ipcs") or "/usr/bin/ipcs", "/usr/bin/ipcs")
    layer.host_binary(shutil.which("pgrep") or "/usr/bin/pgrep", "/usr/bin/pgrep")
    layer.file("/etc/passwd", _PASSWD.encode())
    layer.file("/etc/group", _GROUP.encode())
    return layer.bytes()


def _files_layer(files):
    """A small layer of ``{path: bytes | (bytes, mode)}``."""
    layer = _Layer()
    for path, data in sorted(files.items()):
        data, mode = data if isinstance(data, tuple) else (data, 0o644)
        layer.file(path, data, mode)
    return layer.bytes()


_GZIPPED: dict[str, bytes] = {}


def _gzip(tar):
    """``tar`` gzipped, once per content (the base layer is in every image)."""
    key = digest(tar)
    if key not in _GZIPPED:
        _GZIPPED[key] = compress(tar, "gzip")
    return _GZIPPED[key]


def make_image(layers, cmd=("sh",), entrypoint=None, user="", env=(), workdir="", ports=()):
    """A Docker schema 2 image of uncompressed ``layers`` with the config fields critest reads."""
    blobs, descriptors = {}, []
    for tar in layers:
        blob = _gzip(tar)
        blobs[digest(blob)] = blob
        descriptors.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(blob),
                            "digest": digest(blob)})
    diff_ids = [digest(t) for t in layers]
    cfg = {"Cmd": list(cmd), "Env": [_PATH, *env], "User": user, "WorkingDir": workdir,
           "Entrypoint": list(entrypoint) if entrypoint else None,
           "ExposedPorts": {f"{p}/tcp": {} for p in ports} or None}
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z", "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "dockyard.testing.criimages"}
                    for _ in layers],
    }, sort_keys=True).encode()
    blobs[digest(config)] = config
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "size": len(config), "digest": digest(config)},
                           "layers": descriptors}, indent=2).encode()
    return Image(blobs, config, manifest, DOCKER_MANIFEST, diff_ids, descriptors)


def build_images(deb=None):
    """Every image critest pulls (but the digest-pinned one): ``{reference: Image}``;
    references that name the same Image are tags of one image."""
    base = busybox_layer(deb)
    busybox = make_image([base])
    html = b"<html><body><h1>Welcome to nginx!</h1></body></html>\n"
    nginx_files = {"/usr/sbin/nginx": (_NGINX.encode(), 0o755), "/usr/share/nginx/html/index.html": html}
    nginx = make_image([base, _files_layer(nginx_files)], cmd=("nginx", "-g", "daemon off;"), ports=(80,))
    hostnet_nginx = make_image([base, _files_layer(nginx_files)], cmd=("nginx", "-g", "daemon off;"),
                               env=("NGINX_PORT=12003",), ports=(12003,))
    httpd = make_image([base, _files_layer({
        "/usr/local/bin/httpd-foreground": (_HTTPD.encode(), 0o755),
        "/usr/local/apache2/htdocs/index.html": b"<html><body><h1>It works!</h1></body></html>\n"})],
        cmd=("httpd-foreground",), workdir="/usr/local/apache2", ports=(80,))
    nnp = make_image([base, _files_layer({"/usr/local/bin/nnp": (nnp_elf(), 0o4755)})],
                     entrypoint=("/usr/local/bin/nnp",), cmd=())
    predefined = make_image([base, _files_layer({
        "/etc/passwd": (_PASSWD + "default-user:x:1000:1000::/home/default-user:/bin/sh\n").encode(),
        "/etc/group": (_GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n").encode()})],
        user="1000")

    def marked(name):  # the upstream images: busybox plus a file of their own name (ARG TEST; ADD)
        return make_image([base, _files_layer({f"/{name}": name.encode() + b"\n"})])

    pause = make_image([_files_layer({"/pause": (Path("/usr/bin/catatonit").read_bytes(), 0o755)})],
                       entrypoint=("/pause", "-P"), cmd=())
    images = {
        PAUSE: pause,
        E2E + "busybox:1.29-2": busybox,
        E2E + "nginx:1.14-2": nginx,
        E2E + "httpd:2.4.39-4": httpd,
        E2E + "nonewprivs:1.3": nnp,
        STAGING + "hostnet-nginx-amd64:latest": hostnet_nginx,
        STAGING + "test-image-user-uid:latest": make_image([base], user="1002"),
        STAGING + "test-image-user-username:latest": make_image([base], user="www-data"),
        STAGING + "test-image-user-uid-group:latest": make_image([base], user="1003:1004"),
        STAGING + "test-image-user-username-group:latest": make_image([base], user="www-data:1004"),
        STAGING + "test-image-predefined-group:latest": predefined,
        STAGING + "test-image-latest:latest": marked("test-image-latest"),
        STAGING + "test-image-tag:test": marked("test-image-tag-test"),
        STAGING + "test-image-tag:all": marked("test-image-tag-all"),
    }
    for i in (1, 2, 3):
        images[f"{STAGING}test-image-{i}:latest"] = marked(f"test-image-{i}")
    tags = marked("test-image-tags")
    for i in (1, 2, 3):
        images[f"{STAGING}test-image-tags:{i}"] = tags
    return images


def push_images(base_url, images):
    """Push ``images`` to the registry at ``base_url`` under their repository paths
    without the host (``e2e-test-images/busybox:1.29-2``): what a mirror of the host
    serves.  Each blob goes up once per repository."""
    done = set()
    for ref, image in images.items():
        name, _, tag = ref.rpartition(":")
        repo = name.split("/", 1)[1]
        for d, data in image.blobs.items():
            if (repo, d) not in done:
                put_blob(base_url, repo, data)
                done.add((repo, d))
        put_manifest(base_url, repo, tag, image.manifest, image.media_type)


def mirror_args(base_url):
    """The daemon flags that send every host critest names to the registry at ``base_url``."""
    return [a for host in MIRROR_HOSTS for a in ("--registry-mirror", f"{host}={base_url}")]


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dockyard.testing.criimages",
                                     description="Build critest's stand-in images offline and push them.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    push = sub.add_parser("push", help="push every stand-in to the registry at URL (http://HOST:PORT)")
    push.add_argument("url")
    sub.add_parser("list", help="list the references the stand-ins replace")
    args = parser.parse_args(argv)
    images = build_images()
    if args.cmd == "push":
        push_images(args.url, images)
    for ref, image in images.items():
        print(ref, image.digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
