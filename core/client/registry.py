"""The daemon's registry calls, with credentials: pull, push, login.

Functions over a :class:`~dockyard.client.Client`: each sends the credentials as
Docker does, in ``X-Registry-Auth`` (base64url JSON of the AuthConfig, ``{}`` for
none); pull and push yield the daemon's progress messages, an ``{"error"}``
message raising :class:`~dockyard.client.ProgressError`.  The credentials
themselves come from :mod:`dockyard.client.authconfig`.
"""

import base64
import json

from dockyard.wire import quote

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (the CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

    from .session import Session

    Auth = Mapping[str, Any] | None  # an AuthConfig: username, password, serveraddress...


def encode_auth(auth: "Auth") -> str:
    """The ``X-Registry-Auth`` header's value for ``auth``."""
    return base64.urlsafe_b64encode(json.dumps(auth or {}).encode()).decode()


def pull(client: "Session", image: str, tag: str | None = None, auth: "Auth" = None,
         platform: str | None = None) -> "Iterator[Any]":
    """``POST /images/create?fromImage=``: yields the daemon's progress messages."""
    return client.json_stream("POST", "/images/create",
                              {"fromImage": image, "tag": tag or None, "platform": platform or None},
                              headers={"X-Registry-Auth": encode_auth(auth)})


def push(client: "Session", image: str, tag: str | None = None, auth: "Auth" = None) -> "Iterator[Any]":
    """``POST /images/{name}/push``: yields the daemon's progress messages."""
    return client.json_stream("POST", f"/images/{quote(image, safe='/:')}/push", {"tag": tag or None},
                              headers={"X-Registry-Auth": encode_auth(auth)})


def login(client: "Session", username: str, password: str, server: str) -> "Any":
    """``POST /auth``; returns ``{"Status": "Login Succeeded", ...}`` or raises APIError (401)."""
    return client.request("POST", "/auth", body={"username": username, "password": password,
                                                 "serveraddress": server})


__all__ = ["encode_auth", "pull", "push", "login"]
