"""``docker search`` / ``GET /images/search`` through the docker CLI, the SDK and
our CLI.  No registry that runs offline implements Docker's v1 search API (Debian's
docker-registry serves only the v2 API), so a small real HTTP server here serves
``/v1/_ping`` and ``/v1/search`` as Docker Hub does; the v2-only registry gives
the clear error dockerd gives.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from registry_common import registry_fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

REPOS = [
    {"name": "library/alpine", "description": "A minimal Docker image based on Alpine Linux with a complete "
     "package index", "star_count": 9000, "is_official": True, "is_automated": False},
    {"name": "team/alpine-tools", "description": "tools", "star_count": 12, "is_official": False,
     "is_automated": True},
    {"name": "someone/alpine-mini", "description": "", "star_count": 0, "is_official": False,
     "is_automated": False},
    {"name": "other/busybox", "description": "not an alpine", "star_count": 3, "is_official": False,
     "is_automated": False},
]


class _Search(BaseHTTPRequestHandler):
    """Docker's v1 search API: ``q`` matched in names, ``n`` results at most."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        self.server.seen.append((url.path, parse_qs(url.query), dict(self.headers)))
        if url.path == "/v1/_ping":
            return self._answer(200, True)
        if url.path != "/v1/search":
            return self._answer(404, {"error": "not found"})
        query = parse_qs(url.query)
        q, n = query.get("q", [""])[0], int(query.get("n", ["25"])[0])
        results = [r for r in REPOS if q in r["name"]][:n]
        self._answer(200, {"num_results": len(results), "query": q, "results": results})

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def index():
    """The search server, on loopback (so insecure by default: HTTPS, then HTTP)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Search)
    httpd.daemon_threads, httpd.seen = True, []
    httpd.host = f"127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


v2only = registry_fixture("v2only-", doc="Debian's docker-registry: no search API.")


def ok(res):
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    return res.stdout.decode()


def test_docker_search_through_our_daemon(dy, index):
    out = ok(dy.docker("search", f"{index.host}/alpine"))
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]  # docker 25+ shows no AUTOMATED
    names = [line.split()[0] for line in lines[1:]]
    assert names == ["library/alpine", "team/alpine-tools", "someone/alpine-mini"]
    assert "A minimal Docker image based on Alpine Linux…" in out  # cut at 45, as docker does
    assert lines[1].split()[-2:] == ["9000", "[OK]"]
    path, query, headers = index.seen[-1]
    assert path == "/v1/search" and query == {"q": ["alpine"], "n": ["25"]}
    assert headers.get("X-Docker-Token") == "true"
    # filters and limit, as dockerd applies them
    out = ok(dy.docker("search", "--filter", "is-official=true", f"{index.host}/alpine"))
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["library/alpine"]
    out = ok(dy.docker("search", "--filter", "stars=10", "--format", "{{.Name}} {{.StarCount}}", f"{index.host}/alpine"))
    assert out.split("\n")[:2] == ["library/alpine 9000", "team/alpine-tools 12"]
    out = ok(dy.docker("search", "--limit", "1", "--format", "{{.Name}}", f"{index.host}/alpine"))
    assert out.strip() == "library/alpine" and index.seen[-1][1]["n"] == ["1"]
    res = dy.docker("search", "--filter", "color=red", f"{index.host}/alpine")
    assert res.returncode != 0 and b"invalid filter 'color'" in res.stderr, res.stderr
    res = dy.docker("search", "--limit", "101", f"{index.host}/alpine")
    assert res.returncode != 0 and b"limit 101 is outside the range of [1, 100]" in res.stderr, res.stderr


def test_sdk_search(dy, index):
    client = dy.sdk()
    try:
        found = client.images.search(f"{index.host}/alpine", limit=2)
        assert [r["name"] for r in found] == ["library/alpine", "team/alpine-tools"]
        assert set(found[0]) == {"name", "description", "star_count", "is_official", "is_automated"}
        api = client.api  # this SDK's search() takes no filters: the endpoint directly
        resp = api._get(api._url("/images/search"),
                        params={"term": f"{index.host}/alpine", "filters": json.dumps({"is-automated": ["true"]})})
        assert [r["name"] for r in api._result(resp, json=True)] == ["team/alpine-tools"]
        resp = api._get(api._url("/images/search"), params={"term": f"{index.host}/alpine", "limit": "x"})
        assert resp.status_code == 400 and "invalid limit" in resp.json()["message"]
    finally:
        client.close()


def test_a_registry_without_a_search_api(dy, v2only):
    res = dy.docker("search", f"{v2only.host}/anything")
    err = res.stderr.decode()
    assert res.returncode != 0
    assert "Unexpected status code 404" in err and f"{v2only.host} has no search API" in err, err


def test_dockyard_cli_search(dy, index):
    out = ok(dy.cli("search", f"{index.host}/alpine"))
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    assert [line.split()[0] for line in lines[1:]] == ["library/alpine", "team/alpine-tools", "someone/alpine-mini"]
    assert "Alpine Linux…" in out
    out = ok(dy.cli("search", "--no-trunc", "-f", "is-official=false", "--limit", "5", f"{index.host}/alpine"))
    assert "A minimal" not in out and "team/alpine-tools" in out
    out = ok(dy.cli("search", "--format", "{{.Name}}: {{.IsAutomated}}", f"{index.host}/tools"))
    assert out.strip() == "team/alpine-tools: [OK]"
    res = dy.cli("search", "--filter", "stars=many", f"{index.host}/alpine")
    assert res.returncode != 0 and b"invalid filter 'stars=many'" in res.stderr, res.stderr
