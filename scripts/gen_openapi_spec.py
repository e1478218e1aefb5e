#!/usr/bin/env python3
"""Generate ``core/testing/docker-api-v1.41.openapi.json``: the Docker Engine API spec
in OpenAPI 3.0, for the e2e tests' response checks (:mod:`dockyard.testing.apicheck`).

    python3 scripts/gen_openapi_spec.py [SPEC.yaml] [OUT.json]

Docker publishes its API as Swagger 2.0 (moby's ``api/swagger.yaml``); openapi-core,
which checks the responses, reads only OpenAPI 3.x.  The conversion is done by
swagger2openapi (Mermade's oas-kit, the converter the OpenAPI tooling lists use), run
once here by a developer when the spec changes, with the machine's Node.js:
``npx swagger2openapi@7.0.8``, so the tests need neither Node.js nor the network.
The result is then made smaller: documentation (``summary``, ``example``) goes
where it is a keyword, not where it names a property, and ``description`` (which a
response must have) is emptied; and the
source's sha256 is kept under ``info.x-source-sha256``, so a test can tell when the
spec changed and this file was not made again.
"""

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "reference" / "docker-engine-api-v1.41.yaml"
OUT = ROOT / "core" / "testing" / "docker-api-v1.41.openapi.json"
CONVERTER = "swagger2openapi@7.0.8"
DOC_KEYS = {"summary", "example", "examples", "x-codegen-request-body-name"}


def strip_docs(node, naming=False):
    """``node`` without documentation keywords; the keys of a ``properties`` map
    (``naming``) are names, kept whatever they are."""
    if isinstance(node, list):
        return [strip_docs(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {k: "" if k == "description" and not naming else strip_docs(v, naming=k == "properties" and not naming)
            for k, v in node.items() if naming or k not in DOC_KEYS}


def main(spec=SPEC, out=OUT):
    spec, out = Path(spec), Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        converted = Path(tmp) / "openapi.json"
        subprocess.run(["npx", "--yes", CONVERTER, str(spec), "-o", str(converted)], check=True)
        doc = json.loads(converted.read_text())
    doc = strip_docs(doc)
    doc["info"]["x-source-sha256"] = hashlib.sha256(spec.read_bytes()).hexdigest()
    doc["info"]["x-converted-by"] = CONVERTER
    out.write_text(json.dumps(doc, separators=(",", ":"), sort_keys=False) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
