"""``POST /build`` (the classic builder): instructions, stages, history, build
args.  Every result is checked by running the built image or inspecting it."""

import io
import json
import os
import re
import tarfile

import pytest

from build_common import build_ok, context, post_build, text, uniq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def client(daemon):
    c = daemon.sdk()
    yield c
    c.close()


def run(client, image, *cmd, **kw):
    return client.containers.run(image, list(cmd) if cmd else None, remove=True, **kw).decode()


def step_ids(log):
    """Step number → the image id it ended with."""
    out, step = {}, None
    for line in log.splitlines():
        m = re.match(r"Step (\d+)/", line)
        if m:
            step = int(m.group(1))
        m = re.match(r" ---> ([0-9a-f]{12})$", line)
        if m and step:
            out[step] = m.group(1)
    return out


def _tgz(files):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w:gz") as tar:
        for name, (data, uid) in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.uid, ti.gid, ti.mode = len(data), uid, uid, 0o640
            tar.addfile(ti, io.BytesIO(data))
    return bio.getvalue()


DOCKERFILE = """\
FROM busybox
MAINTAINER someone@example.com
ARG FLAVOUR=plain
ENV GREETING="hello world" HOME_DIR=/srv
LABEL org.example.flavour=$FLAVOUR "two words"="a b"
RUN echo "running as $(id -u) with $GREETING" && mkdir -p $HOME_DIR && echo $FLAVOUR > $HOME_DIR/flavour
RUN ["sh", "-c", "echo exec-form > /exec"]
RUN echo "usr:x:3000:3000::/:/bin/sh" >> /etc/passwd && echo "grp:x:4000:" >> /etc/group
COPY *.txt /txt/
COPY dir /copied-dir
COPY --chown=usr:grp one.txt /owned
COPY --chown=1234 --chmod=0751 one.txt /numeric
ADD bundle.tgz /extracted/
WORKDIR rel
WORKDIR sub
COPY one.txt .
USER usr
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=30s --retries=3 CMD true
SHELL ["/bin/sh", "-e", "-c"]
ONBUILD RUN echo triggered > /onbuild
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/flavour /txt/one.txt; pwd; id -u"]
"""


def test_every_instruction_single_stage(daemon, client):
    tag = uniq()
    files = {"Dockerfile": DOCKERFILE, "one.txt": "one\n", "two.txt": "two\n", "other.md": "no\n",
             "dir": None, "dir/a": "a\n", "dir/sub": None, "dir/sub/b": ("b\n", 0o600),
             "bundle.tgz": _tgz({"x/in-tar": (b"tarred\n", 42)})}
    status, msgs = post_build(daemon, context(files), t=tag, buildargs={"FLAVOUR": "spicy"})
    assert status == 200 and not [m for m in msgs if "error" in m], msgs
    log = text(msgs)
    n = len(DOCKERFILE.splitlines())
    steps = re.findall(r"^Step (\d+)/(\d+) : (.*)$", log, re.M)
    assert len(steps) == n and steps[0] == ("1", str(n), "FROM busybox") and steps[-1][0] == str(n)
    assert "running as 0 with hello world" in log
    assert re.search(r" ---> Running in [0-9a-f]{12}\n", log)
    assert re.search(r"Removing intermediate container [0-9a-f]{12}\n", log)
    assert f"Successfully tagged {tag}:latest\n" in log
    image = client.images.get(tag)
    assert log.endswith(f"Successfully built {image.id[7:19]}\nSuccessfully tagged {tag}:latest\n")
    cfg = image.attrs["Config"]
    assert image.attrs["Author"] == "someone@example.com"
    assert "GREETING=hello world" in cfg["Env"] and "HOME_DIR=/srv" in cfg["Env"]
    assert not [e for e in cfg["Env"] if e.startswith("FLAVOUR")]  # build args are not persisted
    assert cfg["Labels"] == {"org.example.flavour": "spicy", "two words": "a b"}
    assert cfg["WorkingDir"] == "/rel/sub" and cfg["User"] == "usr"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}} and cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGUSR1" and cfg["Shell"] == ["/bin/sh", "-e", "-c"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000, "Retries": 3}
    assert cfg["OnBuild"] == ["RUN echo triggered > /onbuild"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"]
    assert run(client, tag) == "spicy\none\n/rel/sub\n3000\n"
    script = ("cat /exec; ls /txt; cat /copied-dir/a /copied-dir/sub/b; stat -c '%u:%g %a' /owned /numeric "
              "/copied-dir/sub/b /extracted/x/in-tar; cat /extracted/x/in-tar /rel/sub/one.txt")
    got = run(client, tag, script, user="root")
    assert got == ("exec-form\none.txt\ntwo.txt\na\nb\n3000:4000 644\n1234:1234 751\n0:0 600\n42:42 640\n"
                   "tarred\none\n")
    # history: one image per instruction, Docker's created_by, ids of the parent chain
    hist = client.api.history(tag)
    assert len([h for h in hist if h["Id"] != "<missing>"]) == n
    by = [h["CreatedBy"] for h in hist]
    assert by[0] == '/bin/sh -e -c #(nop)  CMD ["cat /srv/flavour /txt/one.txt; pwd; id -u"]'
    assert '/bin/sh -e -c #(nop)  ENTRYPOINT ["/bin/sh" "-c"]' in by  # the SHELL in effect
    assert "/bin/sh -e -c #(nop)  SHELL [/bin/sh -e -c]" in by
    assert "/bin/sh -c #(nop)  EXPOSE 53/udp 8080/tcp" in by and "/bin/sh -c #(nop)  VOLUME [/data]" in by
    assert "/bin/sh -c #(nop)  HEALTHCHECK &{[\"CMD-SHELL\" \"true\"] \"30s\" \"0s\" \"0s\" '\\x03'}" in by
    assert "/bin/sh -c #(nop) WORKDIR /rel/sub" in by and "/bin/sh -c #(nop)  ARG FLAVOUR=plain" in by
    assert "/bin/sh -c #(nop)  MAINTAINER someone@example.com" in by
    assert any(re.fullmatch(r"/bin/sh -c #\(nop\) COPY multi:[0-9a-f]{64} in /txt/ ", b) for b in by)
    assert any(re.fullmatch(r"/bin/sh -c #\(nop\) COPY dir:[0-9a-f]{64} in /copied-dir ", b) for b in by)
    assert any(re.fullmatch(r"/bin/sh -c #\(nop\) ADD file:[0-9a-f]{64} in /extracted/ ", b) for b in by)
    assert "|1 FLAVOUR=spicy /bin/sh -c echo \"running as $(id -u) with $GREETING\" && mkdir -p $HOME_DIR " \
           "&& echo $FLAVOUR > $HOME_DIR/flavour" in by
    assert "|1 FLAVOUR=spicy sh -c echo exec-form > /exec" in by
    empty = {h["CreatedBy"]: h["Size"] for h in hist}
    assert empty["/bin/sh -c #(nop)  USER usr"] == 0
    # intermediate images are untagged children, hidden from `images` without -a
    listed = {i["Id"] for i in client.api.images()}
    every = {i["Id"] for i in client.api.images(all=True)}
    assert hist[1]["Id"] in every and hist[1]["Id"] not in listed and image.id in listed


def test_multi_stage_target_and_copy_from(daemon, client):
    tag = uniq()
    df = """\
ARG BASE=busybox
FROM $BASE AS builder
RUN mkdir /out && echo built > /out/artifact && echo extra > /out/extra
FROM scratch AS files
COPY --from=builder /out/artifact /artifact
FROM ${BASE}
COPY --from=builder /out /from-name
COPY --from=1 /artifact /from-index
COPY --from=busybox /bin/busybox /from-image
CMD ["sh", "-c", "cat /from-name/artifact /from-name/extra /from-index; ls -l /from-image | wc -l"]
"""
    image_id, log = build_ok(daemon, {"Dockerfile": df}, t=tag)
    assert run(client, tag) == "built\nextra\nbuilt\n1\n"
    assert "Step 1/10 : ARG BASE=busybox" in log
    # --target stops at that stage; only it is tagged
    tag2 = uniq()
    _, log2 = build_ok(daemon, {"Dockerfile": df}, t=tag2, target="files")
    assert "Step 6/" not in log2
    files = client.images.get(tag2)
    assert files.id != image_id and files.attrs["RootFS"]["Layers"] and len(files.attrs["RootFS"]["Layers"]) == 1
    tag3 = uniq()  # the scratch stage's file system, read through COPY --from=<image>
    build_ok(daemon, {"Dockerfile": f"FROM busybox\nCOPY --from={tag2} /artifact /a\n"}, t=tag3)
    assert run(client, tag3, "cat", "/a") == "built\n"
    assert [t for t in client.images.get(tag2).tags] == [f"{tag2}:latest"]


def test_build_args_scoping_and_proxy_args(daemon, client):
    tag = uniq()
    df = """\
ARG V=global
ARG ONLY_GLOBAL=g
FROM busybox
RUN echo "before:[$V][$ONLY_GLOBAL]"
ARG V
ARG LOCAL=default
ENV FROM_ENV=$LOCAL
RUN echo "after:[$V][$LOCAL][$http_proxy]" && env | grep -c _proxy || true
FROM busybox
RUN echo "second:[$V][$LOCAL]"
"""
    _, log = build_ok(daemon, {"Dockerfile": df}, t=tag, buildargs={"LOCAL": "given", "http_proxy": "http://p:1",
                                                                     "UNUSED": "x"})
    assert "before:[][]" in log
    assert "after:[global][given][http://p:1]\n1\n" in log
    assert "second:[][]" in log
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in log
    after = step_ids(log)[8]  # RUN "after": the declared args, sorted; the proxy arg is not recorded
    hist = [h["CreatedBy"] for h in client.api.history(after)]
    assert hist[0].startswith("|2 LOCAL=given V=global /bin/sh -c echo")
    assert all("http_proxy=" not in b for b in hist)
    assert "FROM_ENV=given" in client.images.get(after).attrs["Config"]["Env"]


def test_onbuild_triggers_run_in_the_child(daemon, client):
    parent, child = uniq("parent"), uniq("child")
    build_ok(daemon, {"Dockerfile": "FROM busybox\nONBUILD COPY hello /hello\nONBUILD RUN echo trig >> /hello\n",
                      "hello": "parent-context\n"}, t=parent)
    assert run(client, parent, "sh", "-c", "ls /hello 2>/dev/null || echo none") == "none\n"
    _, log = build_ok(daemon, {"Dockerfile": f"FROM {parent}\nCMD [\"cat\", \"/hello\"]\n", "hello": "child\n"},
                      t=child)
    assert "# Executing 2 build triggers\n" in log
    assert run(client, child) == "child\ntrig\n"
    assert client.images.get(child).attrs["Config"]["OnBuild"] in (None, [])


def test_entrypoint_resets_inherited_cmd_and_shell_form(daemon, client):
    base, tag = uniq("base"), uniq()
    build_ok(daemon, {"Dockerfile": 'FROM busybox\nCMD ["echo", "base-cmd"]\n'}, t=base)
    build_ok(daemon, {"Dockerfile": f"FROM {base}\nENTRYPOINT echo from-entrypoint\n"}, t=tag)
    cfg = client.images.get(tag).attrs["Config"]
    assert cfg["Cmd"] is None and cfg["Entrypoint"] == ["/bin/sh", "-c", "echo from-entrypoint"]
    assert run(client, tag) == "from-entrypoint\n"
    tag2 = uniq()
    build_ok(daemon, {"Dockerfile": f'FROM {base}\nCMD ["kept"]\nENTRYPOINT ["echo"]\n'}, t=tag2)
    assert run(client, tag2) == "kept\n"


def test_add_url_and_query_labels(daemon, client, tmp_path):
    import http.server
    import threading

    (tmp_path / "payload.txt").write_text("downloaded\n")
    (tmp_path / "arch.tar.gz").write_bytes(_tgz({"inner": (b"not extracted\n", 0)}))
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        tag = uniq()
        df = f"FROM busybox\nADD {url}/payload.txt /dl/\nADD {url}/arch.tar.gz /arch.tar.gz\n" \
             f"ADD --chmod=644 {url}/payload.txt /named\n"
        _, log = build_ok(daemon, {"Dockerfile": df}, t=tag, labels={"from.query": "yes"})
        assert "LABEL from.query=yes" in log
        got = run(client, tag, "sh", "-c", "cat /dl/payload.txt; stat -c %a /dl/payload.txt /named; "
                                           "gzip -dc /arch.tar.gz | tar -t")
        assert got == "downloaded\n600\n644\ninner\n"
        assert client.images.get(tag).attrs["Config"]["Labels"] == {"from.query": "yes"}
    finally:
        server.shutdown()
        server.server_close()


def test_quiet_gzip_context_custom_dockerfile_and_dockerignore(daemon, client):
    tag = uniq()
    files = {"build/Alt.dockerfile": "FROM busybox\nCOPY . /ctx/\n", "keep": "k\n", "secret": "s\n",
             ".dockerignore": ".dockerignore\nbuild/Alt.dockerfile\n"}
    status, msgs = post_build(daemon, context(files, compress="gzip"), t=tag, q=True,
                              dockerfile="build/Alt.dockerfile")
    assert status == 200
    streams = [m["stream"] for m in msgs if "stream" in m]
    image = client.images.get(tag)
    assert streams == [image.id + "\n"]
    listing = run(client, tag, "sh", "-c", "cd /ctx && find . -type f | sort")
    assert listing == "./keep\n./secret\n"
    assert json.loads(json.dumps(msgs))  # valid JSON lines
