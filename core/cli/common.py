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


def inspect_template(fmt, name=""):
    """``fmt`` parsed for an inspect (None without one); one that does not parse
    is docker's "template parsing error" and exit 64, before anything is fetched."""
    if not fmt:
        return None
    try:
        return output.Template(fmt, name)
    except output.TemplateError as exc:
        output.error(f"template parsing error: {exc}")
        raise SystemExit(64) from None


def inspect_render(template, obj, context=None):
    """One object through an inspect's template: docker runs it with
    ``missingkey=error`` on the JSON (or on a typed ``context``); None after
    docker's error when it fails."""
    try:
        return template.render(obj, missing=output.ERROR, context=context)
    except output.TemplateError as exc:
        output.error(f"template parsing error: {exc}")
        return None


def inspect_each(names, fetch, fmt=None, context=None):
    """docker's ``inspect`` of one kind: ``fetch(name)`` each; print a JSON array,
    or each object through the Go template ``fmt``.  A missing one is the daemon's
    error and exit 1.  A template that printed nothing leaves an empty line, as
    docker's template inspector does when it flushes an empty buffer."""
    import json

    from dockyard.client import APIError
    template = inspect_template(fmt)
    found, rc, printed = [], 0, False
    for name in names:
        try:
            obj = fetch(name)
        except APIError as exc:
            output.daemon_error(exc)
            rc = 1
            continue
        found.append(obj)
        if template is not None:
            text = inspect_render(template, obj, context)
            if text is None:
                rc = 1
            else:
                print(text, flush=True)
                printed = True
    if template is None:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    elif not printed:
        print(flush=True)
    return rc
