"""The client's registry credentials, kept as the docker CLI keeps them.

``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``)::

    {"auths": {"127.0.0.1:5000": {"auth": "<base64 user:password>"}},
     "credsStore": "pass",                      # optional: every registry's secrets there
     "credHelpers": {"registry.example": "ecr-login"}}   # optional: per registry

With a helper configured for a registry, its secret goes to
``docker-credential-<name>`` (``get``/``store``/``erase``, JSON on stdin/stdout, as
docker-credential-helpers define it) and ``auths`` keeps only an empty entry.
Docker Hub's key is ``https://index.docker.io/v1/``.  The file is rewritten
atomically with mode 0600; keys we do not know are kept.

Standard library only: the client's, not the daemon's (the daemon is handed an
AuthConfig in ``X-Registry-Auth`` and never reads this file).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from typing import Any

HUB_KEY = "https://index.docker.io/v1/"


class CredentialError(Exception):
    """The config file or a credential helper failed; the message says which."""


def config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def server_key(host: str) -> str:
    return HUB_KEY if host in ("docker.io", "index.docker.io", "registry-1.docker.io") else host


def _bare(key: str) -> str:
    for prefix in ("https://", "http://"):
        key = key.removeprefix(prefix)
    return key.split("/", 1)[0]


def load(path: str | None = None) -> dict[str, Any]:
    path = path or config_path()
    try:
        with open(path) as fh:
            cfg = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CredentialError(f"{path}: cannot read the docker config: {exc}") from None
    if not isinstance(cfg, dict):
        raise CredentialError(f"{path}: the docker config is not a JSON object")
    return cfg


def _save(cfg: dict[str, Any], path: str | None = None) -> None:
    path = path or config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(cfg, fh, indent="\t")
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def helper_for(cfg: dict[str, Any], key: str) -> str | None:
    return (cfg.get("credHelpers") or {}).get(key) or (cfg.get("credHelpers") or {}).get(_bare(key)) \
        or cfg.get("credsStore") or None


def _helper(name: str, action: str, data: str) -> str | None:
    exe = f"docker-credential-{name}"
    try:
        res = subprocess.run([exe, action], input=data.encode(), capture_output=True, timeout=60)
    except FileNotFoundError:
        raise CredentialError(f"credential helper {exe} is not installed (configured in {config_path()})") from None
    except subprocess.TimeoutExpired:
        raise CredentialError(f"credential helper {exe} {action} timed out") from None
    out = res.stdout.decode("utf-8", "replace").strip()
    if res.returncode != 0:
        if action == "get" and "credentials not found" in (out + res.stderr.decode("utf-8", "replace")).lower():
            return None
        raise CredentialError(f"credential helper {exe} {action} failed: {out or res.stderr.decode().strip()}")
    return out


def get(host: str, path: str | None = None) -> dict[str, str] | None:
    """Docker's AuthConfig for ``host`` (``username``, ``password`` or
    ``identitytoken``, ``serveraddress``), or None when nothing is stored."""
    cfg = load(path)
    key = server_key(host)
    helper = helper_for(cfg, key)
    if helper:
        answer = _helper(helper, "get", key)
        if not answer:
            return None
        try:
            doc = json.loads(answer)
        except ValueError:
            raise CredentialError(f"credential helper docker-credential-{helper} answered no JSON") from None
        if doc.get("Username") == "<token>":
            return {"identitytoken": doc.get("Secret", ""), "serveraddress": key}
        return {"username": doc.get("Username", ""), "password": doc.get("Secret", ""), "serveraddress": key}
    auths = cfg.get("auths") or {}
    entry = auths.get(key)
    if entry is None:
        entry = next((v for k, v in auths.items() if _bare(k) == _bare(key)), None)
    if not entry:
        return None
    out: dict[str, str] = {"serveraddress": key}
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise CredentialError(f"{path or config_path()}: auths.{key}.auth is not base64 user:password") from None
        out.update(username=user, password=password)
    if entry.get("identitytoken"):
        out["identitytoken"] = entry["identitytoken"]
    return out if len(out) > 1 else None


def store(host: str, username: str, password: str, path: str | None = None) -> str:
    """Keep ``username``/``password`` for ``host``; returns where (``config.json`` or the helper)."""
    cfg = load(path)
    key = server_key(host)
    auths = cfg.setdefault("auths", {})
    helper = helper_for(cfg, key)
    if helper:
        _helper(helper, "store", json.dumps({"ServerURL": key, "Username": username, "Secret": password}))
        auths[key] = {}
        where = f"docker-credential-{helper}"
    else:
        auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        where = path or config_path()
    _save(cfg, path)
    return where


def erase(host: str, path: str | None = None) -> bool:
    """Forget ``host``'s credentials; True if there were any."""
    cfg = load(path)
    key = server_key(host)
    helper = helper_for(cfg, key)
    found = False
    if helper:
        try:
            _helper(helper, "erase", key)
            found = True
        except CredentialError as exc:
            if "not found" not in str(exc).lower():
                raise
    auths = cfg.get("auths") or {}
    for k in [k for k in auths if k == key or _bare(k) == _bare(key)]:
        del auths[k]
        found = True
    if found:
        _save(cfg, path)
    return found
