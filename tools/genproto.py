"""Regenerate the protobuf/gRPC modules in src/minijet/proto from protos/.

Run `make proto` (or `python tools/genproto.py`). tests/test_proto_fresh.py fails when
the committed modules differ from what this produces.
"""
import pathlib
import sys

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Compile every .proto under protos/ into out_dir; return the generated files."""
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{PROTOS}", f"-I{include}",
                      f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *sources])
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    return sorted(p for p in out_dir.rglob("*_pb2*.py"))


if __name__ == "__main__":
    files = generate(ROOT / "src")
    print("\n".join(str(f.relative_to(ROOT)) for f in files), file=sys.stderr)
