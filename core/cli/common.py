"""Helpers several CLI command modules share: a daemon call that prints its error,
``KEY=VALUE`` lists, and docker's ``inspect`` loop (JSON array or ``--format``)."""

from . import output


def call(fn):
    """``(fn(), 0)``, or ``(None, 1)`` after printing the daemon's error."""
    from dockyard.client import APIError
    try:
        return fn(), 0
    except APIError as exc:
        output.daemon_error(exc)
        return None, 1


def pairs(items, what):
    """``["k=v", ...]`` -> ``{"k": "v"}``; an empty key is a ValueError naming ``what``."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise ValueError(f"invalid {what}: {item!r}")
        out[key] = value
    return out


def inspect_each(names, fetch, fmt=None):
    """docker's ``inspect``: ``fetch(name)`` each; print a JSON array, or each object
    through the Go template ``fmt``.  A missing one is "Error: ..." (404) and exit 1."""
    import json

    from dockyard.client import APIError
    found, rc = [], 0
    for name in names:
        try:
            obj = fetch(name)
        except APIError as exc:
            output.error(f"Error: {exc.message}" if exc.status == 404 else f"Error response from daemon: {exc.message}")
            rc = 1
            continue
        found.append(obj)
        if fmt:
            try:
                print(output.Template(fmt).render(obj), flush=True)
            except output.TemplateError as exc:
                output.error(f"Error: template: {exc}")
                return 1
    if not fmt:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    return rc
