"""Generates proxy/_gen from proto/ with grpcio-tools (the version pinned in pyproject.toml).

The generated modules are checked in so `pip install` needs no code generation; tests/unit/test_generated_code.py
fails when they are stale. Run after editing a .proto file:

    .venv/bin/python scripts/gen_proto.py
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GEN_DIR = ROOT / "proxy" / "_gen"
# protoc writes absolute imports (`from switchyard.v1 import x_pb2`); they must resolve inside our package.
IMPORT_FIX = (
    re.compile(r"^from switchyard\.v1 import", re.MULTILINE),
    "from proxy._gen.switchyard.v1 import",
)


def generate(out_dir: Path) -> list[Path]:
    """Writes the generated package under out_dir and returns the files written."""
    protos = sorted(PROTO_DIR.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_DIR)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    written = sorted(p for p in out_dir.rglob("*") if p.suffix in {".py", ".pyi"})
    for path in written:
        pattern, replacement = IMPORT_FIX
        path.write_text(pattern.sub(replacement, path.read_text()))
    for package in {p.parent for p in written} | {out_dir / "switchyard"}:
        init = package / "__init__.py"
        if not init.exists():
            init.write_text("")
    return sorted(p for p in out_dir.rglob("*") if p.suffix in {".py", ".pyi"})


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        target = GEN_DIR / "switchyard"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(tmp) / "switchyard", target)
    (GEN_DIR / "__init__.py").write_text(
        '"""Code generated from proto/ by scripts/gen_proto.py; never edit by hand."""\n'
    )
    print(f"generated {GEN_DIR.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
