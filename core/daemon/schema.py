"""Request bodies checked against the Docker Engine API's schema, as Go decodes them.

``api_schema.json`` beside this module holds the schema of every JSON request body
by operation id (``ContainerCreate``, ``NetworkConnect``, ...), generated from the
API spec by ``scripts/gen_api_schema.py``.  :func:`check` refuses a body that
dockerd's Go decoder would refuse, with a message naming the field:

* a value of the wrong JSON type (``{"Image": 5}``), or a fraction for an integer;
* an integer outside its Go type (``Memory: 10**30`` does not fit an int64), which
  would otherwise wrap on its way into a cgroup file;

and, like Go, accepts null for every value and ignores fields it does not know, so
clients that speak a newer API version keep working.  Values that decode but make
no sense (a 1 MB memory limit) are the engine's to refuse, with Docker's messages.

The schema file is read and the validators built on first use: importing this
module costs nothing, so the daemon starts as fast as before.
"""

import functools
import json
import os

from ..errors import InvalidParameter

SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "api_schema.json")
_GO_KIND = {bool: "bool", str: "string", int: "number", float: "number", list: "array", dict: "object"}
_GO_TYPE = {"string": "string", "boolean": "bool", "number": "float64", "array": "array", "object": "object"}


@functools.lru_cache(maxsize=1)
def _document():
    with open(SCHEMA_FILE) as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=None)
def validator(operation):
    """The draft-4 validator of ``operation``'s body (built once, on first use)."""
    import jsonschema  # a few tens of ms: only when the first body is checked

    doc = _document()
    body = doc["bodies"].get(operation)
    if body is None:
        raise KeyError(f"no request body schema for operation {operation!r}")
    base = jsonschema.Draft4Validator
    # Go refuses 1.0 for an int field; draft 4 counts it as an integer
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
    cls = jsonschema.validators.extend(base, type_checker=checker)
    return cls({**body, "definitions": doc["definitions"]})


def field_path(path):
    """``("HostConfig", "Ulimits", 0, "Soft")`` → ``HostConfig.Ulimits[0].Soft``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _expected(schema):
    types = schema.get("type")
    types = [t for t in (types if isinstance(types, list) else [types]) if t and t != "null"]
    names = [schema.get("format", "int64") if t == "integer" else _GO_TYPE.get(t, t) for t in types]
    return " or ".join(names) or "null"


def message(error):
    """A Go-decoder-like message for a jsonschema error, naming the field."""
    where = field_path(error.absolute_path)
    into = f"field {where}" if where else "the request body"
    kind = _GO_KIND.get(type(error.instance), "value")
    if error.validator in ("minimum", "maximum"):
        return (f"json: cannot unmarshal number {error.instance} into {into} of type "
                f"{error.schema.get('format', 'int64')} (out of range)")
    if error.validator == "type":
        if kind == "number" and "integer" in str(error.validator_value):
            kind = f"number {error.instance}"  # a fraction where Go wants an integer
        return f"json: cannot unmarshal {kind} into {into} of type {_expected(error.schema)}"
    return f"json: invalid value for {into}: {error.message}"


#: the exact Python types of JSON values of each schema type (a subclass: jsonschema decides)
_TYPES = {"null": (type(None),), "boolean": (bool,), "string": (str,), "array": (list,), "object": (dict,),
          "integer": (int,), "number": (int, float)}
_KNOWN = {"type", "properties", "additionalProperties", "items", "minimum", "maximum", "allOf", "$ref",
          "format", "$comment"}  # format: draft 4 validators do not check it without a format checker


def _compile(schema, compiled):
    """A predicate that is true only if ``schema`` (the subset of draft 4 that
    ``api_schema.json`` uses) accepts a value; ``compiled`` holds the predicates of
    ``#/definitions/NAME`` (filled on first use: definitions may refer to themselves)."""
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"schema keywords the fast check does not know: {sorted(unknown)}")
    checks = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        kinds = frozenset(t for n in names for t in _TYPES[n])
        checks.append(lambda v: type(v) in kinds)
    if "properties" in schema or "additionalProperties" in schema:
        props = {k: _compile(v, compiled) for k, v in schema.get("properties", {}).items()}
        extra = _compile(schema["additionalProperties"], compiled) if "additionalProperties" in schema else None
        if extra is not None and not isinstance(schema["additionalProperties"], dict):
            raise ValueError("additionalProperties that is not a schema")

        def members(v):
            if not isinstance(v, dict):
                return True
            for key, item in v.items():
                check = props.get(key, extra)
                if check is not None and not check(item):
                    return False
            return True
        checks.append(members)
    if "items" in schema:
        if not isinstance(schema["items"], dict):
            raise ValueError("items that is not one schema")
        item_check = _compile(schema["items"], compiled)
        checks.append(lambda v: not isinstance(v, list) or all(item_check(x) for x in v))
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None or high is not None:
        checks.append(lambda v: type(v) not in (int, float) or ((low is None or v >= low)
                                                                and (high is None or v <= high)))
    for sub in schema.get("allOf", ()):
        checks.append(_compile(sub, compiled))
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/definitions/"):
            raise ValueError(f"$ref {ref!r}")
        name = ref[len("#/definitions/"):]
        if name not in compiled:
            compiled[name] = None  # being compiled: a reference to it looks it up when called
            compiled[name] = _compile(_document()["definitions"][name], compiled)
        checks.append(lambda v: compiled[name](v))
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(c(v) for c in checks)


@functools.lru_cache(maxsize=None)
def accepts(operation):
    """A fast predicate, true only for a body that ``operation``'s validator accepts
    (jsonschema walks ContainerCreate's schema in about a millisecond, on the event
    loop, for every ``docker run``); a body it refuses goes to jsonschema for the
    message.  None if the schema uses what the predicate does not know."""
    body = _document()["bodies"].get(operation)
    if body is None:
        return None
    try:
        return _compile(body, {})
    except (ValueError, KeyError):
        return None


def check(operation, body):
    """Raise :class:`InvalidParameter` (400) if Go would refuse to decode ``body``."""
    fast = accepts(operation)
    if fast is not None and fast(body):
        return
    import jsonschema

    error = jsonschema.exceptions.best_match(validator(operation).iter_errors(body))
    if error is not None:
        raise InvalidParameter(message(error))
