"""The checked-in proxy/_gen must be exactly what scripts/gen_proto.py produces from proto/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_proto"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_code_matches_proto_files(tmp_path: Path) -> None:
    generator = _load_generator()
    fresh = {p.relative_to(tmp_path): p.read_text() for p in generator.generate(tmp_path)}
    checked_in_dir = ROOT / "proxy" / "_gen"
    checked_in = {
        p.relative_to(checked_in_dir): p.read_text()
        for p in checked_in_dir.rglob("*")
        if p.suffix in {".py", ".pyi"} and p.parent != checked_in_dir
    }
    stale = sorted(str(p) for p in fresh if fresh[p] != checked_in.get(p))
    extra = sorted(str(p) for p in checked_in if p not in fresh)
    assert not stale and not extra, (
        f"proxy/_gen is stale (changed: {stale}, not generated any more: {extra}); "
        "run .venv/bin/python scripts/gen_proto.py and commit the result"
    )
