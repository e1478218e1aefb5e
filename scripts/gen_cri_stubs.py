"""Generate the CRI's Python stubs (core/cri/api/) from Kubernetes' api.proto.

    python scripts/gen_cri_stubs.py [PROTO]   (default ../shared/reference/cri-api-v1.26-api.proto)

The stubs are generated at commit time (grpcio-tools is a developer's tool, not a
dependency): the proto is copied without its gogoproto import and options, which
only shape Go code and leave the wire format alone, and protoc writes
``api_pb2.py`` (messages), ``api_pb2.pyi`` (their types) and ``api_pb2_grpc.py``
(services), whose import of the messages is made relative to the package.
"""

import pathlib
import re
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent.parent
OUT = HERE / "core" / "cri" / "api"
DEFAULT = HERE.parent / "shared" / "reference" / "cri-api-v1.26-api.proto"


def strip_gogo(text: str) -> str:
    text = re.sub(r'^import "github.com/gogo/protobuf/gogoproto/gogo.proto";\n', "", text, flags=re.M)
    return re.sub(r"^option \(gogoproto\.[a-z_]+\) = +(true|false);\n", "", text, flags=re.M)


def main(argv: list[str]) -> int:
    from grpc_tools import protoc

    src = pathlib.Path(argv[0]) if argv else DEFAULT
    text = strip_gogo(src.read_text())
    if "gogoproto" in text:
        raise SystemExit(f"{src}: gogoproto options left after stripping")
    with tempfile.TemporaryDirectory() as tmp:
        (pathlib.Path(tmp) / "api.proto").write_text(text)
        rc = protoc.main(["protoc", f"-I{tmp}", f"--python_out={OUT}", f"--pyi_out={OUT}",
                          f"--grpc_python_out={OUT}", str(pathlib.Path(tmp) / "api.proto")])
    if rc:
        return rc
    grpc_py = OUT / "api_pb2_grpc.py"
    grpc_py.write_text(grpc_py.read_text().replace("import api_pb2 as api__pb2", "from . import api_pb2 as api__pb2"))
    (OUT / "api.proto").write_text(text)
    print(f"stubs of {src.name} written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
