#!/usr/bin/env python3
"""Generate ``core/daemon/api_schema.json`` from the Docker Engine API spec.

    python3 scripts/gen_api_schema.py [SPEC.yaml] [OUT.json]

The daemon validates every JSON request body against the schema of its operation
(:mod:`dockyard.daemon.schema`).  The spec is Swagger 2.0 in YAML; this script,
run by a developer when the spec changes (it needs PyYAML, the daemon does not),
keeps only what a decoder checks and writes compact JSON Schema (draft 4, which
Swagger 2.0's schemas are):

* the definitions reachable from a request body, and each body's schema under
  ``bodies`` by operation id (``ContainerCreate``, ``NetworkConnect``, ...);
* ``type``, ``properties``, ``items``, ``additionalProperties``, ``allOf`` and
  ``$ref``; documentation, examples, defaults, ``required``, ``enum`` and the
  spec's ``minimum``/``maximum`` go, because Docker's Go decoder checks none of
  them (the engine refuses bad values with Docker's own messages);
* every integer gets the bounds of its Go type (``format``, or :data:`GO_TYPES`
  where the spec has none or a wrong one; Go's ``int`` is 64 bits), so a value
  that would overflow (``Memory: 10**30``) is refused as Go refuses it;
* :data:`STRSLICE` fields take a string or an array of strings (Go's
  ``strslice.StrSlice``), and :data:`NEWER` adds fields that clients send for
  later API versions and the engine reads.

Null is accepted for every value (``"null"`` joins every ``type``) and unknown
fields are ignored (no ``additionalProperties: false``), as by Go's decoder.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "reference" / "docker-engine-api-v1.41.yaml"
OUT = ROOT / "core" / "daemon" / "api_schema.json"

BOUNDS = {"int8": (-2 ** 7, 2 ** 7 - 1), "int16": (-2 ** 15, 2 ** 15 - 1), "int32": (-2 ** 31, 2 ** 31 - 1),
          "int64": (-2 ** 63, 2 ** 63 - 1), "uint8": (0, 2 ** 8 - 1), "uint16": (0, 2 ** 16 - 1),
          "uint32": (0, 2 ** 32 - 1), "uint64": (0, 2 ** 64 - 1)}
#: the Go type of integer fields whose spec format is missing or differs (moby's api/types)
GO_TYPES = {
    ("Resources", "BlkioWeight"): "uint16",
    ("Resources", "BlkioWeightDevice", "*", "Weight"): "uint16",
    ("Resources", "IOMaximumIOps"): "uint64",
    ("Resources", "IOMaximumBandwidth"): "uint64",
    ("ThrottleDevice", "Rate"): "uint64",
    ("Mount", "TmpfsOptions", "Mode"): "uint32",
    ("HostConfig", "ConsoleSize", "*"): "uint64",
}
#: Go's strslice.StrSlice: a JSON string or an array of strings
STRSLICE = {("ContainerConfig", "Cmd"), ("ContainerConfig", "Entrypoint"), ("ContainerConfig", "Shell")}
#: fields of later API versions that clients send and the engine reads
NEWER = {
    "ExecStart": {"ConsoleSize": {"type": "array", "items": {"type": "integer", "format": "uint64"}}},
    "HealthConfig": {"StartInterval": {"type": "integer", "format": "int64"}},
}
KEEP = ("type", "properties", "items", "additionalProperties", "allOf", "$ref", "format")


def convert(schema, where, refs):
    """The decoder-relevant part of a Swagger schema; ``where`` is the tuple path
    (definition name, property, ``*`` for items and map values) for the tables above."""
    if not isinstance(schema, dict):
        return schema
    if where in STRSLICE:
        return {"type": ["string", "array", "null"], "items": {"type": ["string", "null"]}}
    out = {}
    for key in KEEP:
        if key not in schema:
            continue
        value = schema[key]
        if key == "$ref":
            refs.add(value.rsplit("/", 1)[1])
            out[key] = value
        elif key == "properties":
            out[key] = {name: convert(sub, where + (name,), refs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            if isinstance(value, dict):
                out[key] = convert(value, where + ("*",), refs)
        elif key == "allOf":
            out[key] = [convert(sub, where, refs) for sub in value]
        elif key == "format":
            pass
        elif key == "type":
            out[key] = [value, "null"]
        else:
            out[key] = value
    if schema.get("type") == "integer":
        fmt = GO_TYPES.get(where) or schema.get("format")
        fmt = fmt if fmt in BOUNDS else "int64"
        out["format"] = fmt
        out["minimum"], out["maximum"] = BOUNDS[fmt]
    return out


def bodies(spec):
    """``{operationId: body schema}`` for every operation whose body is JSON."""
    found = {}
    for ops in spec["paths"].values():
        for op in ops.values():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", ()):
                schema = param.get("schema") or {}
                if param.get("in") == "body" and schema.get("type") not in ("string", "file"):
                    found[op["operationId"]] = schema
    return found


def _with_newer(schema, name, refs):
    if name in NEWER:
        extra = convert({"type": "object", "properties": NEWER[name]}, (name,), refs)["properties"]
        schema.setdefault("properties", {}).update(extra)
    return schema


def generate(spec):
    definitions, refs, done = {}, set(), set()
    out_bodies = {}
    for op, schema in sorted(bodies(spec).items()):
        out_bodies[op] = _with_newer(convert(schema, (op,), refs), op, refs)
    while refs - done:
        name = sorted(refs - done)[0]
        done.add(name)
        definitions[name] = _with_newer(convert(spec["definitions"][name], (name,), refs), name, refs)
    return {"$comment": "generated by scripts/gen_api_schema.py from docker-engine-api-v1.41.yaml: do not edit",
            "definitions": dict(sorted(definitions.items())), "bodies": out_bodies}


def main(argv):
    import yaml  # only here: the daemon reads the JSON this writes

    spec_path = Path(argv[1]) if len(argv) > 1 else SPEC
    out_path = Path(argv[2]) if len(argv) > 2 else OUT
    with open(spec_path) as fh:
        spec = yaml.safe_load(fh)
    text = json.dumps(generate(spec), separators=(",", ":"), sort_keys=False)
    out_path.write_text(text + "\n")
    print(f"{out_path}: {len(text)} bytes, from {spec_path}")


if __name__ == "__main__":
    main(sys.argv)
