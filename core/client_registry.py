"""The daemon's registry calls for the ``dockyard`` CLI: pull, push, login.

Functions over a :class:`dockyard.client.Client` (kept out of that module): each
sends the credentials as Docker does, in ``X-Registry-Auth`` (base64url JSON of the
AuthConfig, ``{}`` for none); pull and push yield the daemon's progress messages,
an ``{"error"}`` message raising :class:`dockyard.client.ProgressError`.
"""

import base64
import json

from dockyard.client import quote


def encode_auth(auth):
    return base64.urlsafe_b64encode(json.dumps(auth or {}).encode()).decode()


def pull(client, image, tag=None, auth=None, platform=None):
    return client.json_stream("POST", "/images/create",
                              {"fromImage": image, "tag": tag or None, "platform": platform or None},
                              headers={"X-Registry-Auth": encode_auth(auth)})


def push(client, image, tag=None, auth=None):
    return client.json_stream("POST", f"/images/{quote(image, safe='/:')}/push", {"tag": tag or None},
                              headers={"X-Registry-Auth": encode_auth(auth)})


def login(client, username, password, server):
    """``POST /auth``; returns ``{"Status": "Login Succeeded", ...}`` or raises APIError (401)."""
    return client.request("POST", "/auth", body={"username": username, "password": password,
                                                 "serveraddress": server})
