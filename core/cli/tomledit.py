"""``plugins.toml`` edited in place for ``dockyard driver use``.

An admin's config file carries their comments (and the shipped default explains
every key in comments): rewriting it from the parsed values, as ``tomli_w`` does,
threw them all away.  tomlkit keeps a document's comments, order and layout and
changes only the values we set.
"""

import os


def load(text):
    import tomlkit
    return tomlkit.parse(text)


def dump(doc):
    import tomlkit
    return tomlkit.dumps(doc)


def plain(text):
    """The document as plain dicts (what the daemon's loader reads)."""
    import tomllib
    return tomllib.loads(text)


def choose(doc, kind, name, options=None):
    """Make ``name`` the ``kind`` driver in ``doc``; with ``options``, set them
    in ``[kind.options.name]`` (keys not named are kept)."""
    import tomlkit

    if kind not in doc:
        doc[kind] = tomlkit.table()
    table = doc[kind]
    if kind == "network":
        drivers = table.get("drivers")
        if drivers is None:
            table["drivers"] = ["none", "host", name] if name not in ("none", "host") else ["none", "host"]
        elif name not in drivers:
            drivers.append(name)
        table["default"] = name
    else:
        table["driver"] = name
    if options:
        if "options" not in table:
            table["options"] = tomlkit.table(is_super_table=True)
        if name not in table["options"]:
            table["options"][name] = tomlkit.table()
        for key, value in options.items():
            table["options"][name][key] = value
    return doc


def write_atomic(path, text):
    """Write ``text`` to ``path`` atomically (temp file, fsync, rename), keeping
    the old file's mode; the old file is intact if anything fails."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
