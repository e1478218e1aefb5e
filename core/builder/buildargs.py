"""Build arguments with the classic builder's rules (moby ``builder/dockerfile/buildargs.go``).

* ``--build-arg`` values (``options``) override every default; a value of
  ``None`` (``--build-arg NAME`` with NAME unset on the client) means "no value".
* ARGs before the first FROM are *meta* args: usable in FROM, and inside a stage
  only once re-declared there (``ARG NAME`` without a default takes the meta value).
* Each stage starts with no declared args (:meth:`BuildArgs.for_stage`).
* The predefined proxy args (:data:`BUILTIN`) need no declaration; they reach
  RUN's environment when given with ``--build-arg``, but appear in the history
  (and the cache key) only when declared.
"""

BUILTIN = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                     "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})


class BuildArgs:
    def __init__(self, options) -> None:
        self.options = dict(options or {})
        self.meta: dict[str, str | None] = {}     # name -> default (None: no default)
        self.allowed: dict[str, str | None] = {}  # this stage's declared args
        self.referenced: set[str] = set()         # names declared anywhere (for the unused warning)

    def for_stage(self):
        """A copy for a new stage: the same options and meta args, nothing declared."""
        new = BuildArgs(self.options)
        new.meta, new.referenced = self.meta, self.referenced
        return new

    def add_meta(self, name, default) -> None:
        self.meta[name] = default
        self.referenced.add(name)

    def add(self, name, default) -> None:
        self.allowed[name] = default
        self.referenced.add(name)

    def _value(self, name, mapping):
        """moby ``getBuildArg``: (value, found)."""
        if self.options.get(name) is not None:
            return self.options[name], True
        default = mapping.get(name)
        if default is None:
            if self.meta.get(name) is not None:
                return self.meta[name], True
            return "", False
        return default, True

    def meta_env(self):
        """The values usable in FROM: ``{name: value}``."""
        out = {}
        for name in list(self.meta) + [b for b in BUILTIN if b in self.options]:
            value, found = self._value(name, self.meta)
            if found:
                out[name] = value
        return out

    def allowed_env(self):
        """Declared args (and given proxy args) that have a value: ``{name: value}``."""
        out = {}
        for name in list(self.allowed) + sorted(b for b in BUILTIN if b in self.options and b not in self.allowed):
            value, found = self._value(name, self.allowed)
            if found:
                out[name] = value
        return out

    def filter_allowed(self, env_list):
        """moby ``FilterAllowed``: ``["K=V"]`` of the allowed args not set by ENV in ``env_list``."""
        keys = {e.partition("=")[0] for e in env_list or ()}
        return [f"{k}={v}" for k, v in self.allowed_env().items() if k not in keys]

    def in_history(self, name) -> bool:
        """moby ``IsReferencedOrNotBuiltin``."""
        return name in self.allowed or name not in BUILTIN

    def unused(self):
        """``--build-arg`` names no ARG declared (proxy args excepted), sorted."""
        return sorted(k for k in self.options if k not in self.referenced and k not in BUILTIN)
