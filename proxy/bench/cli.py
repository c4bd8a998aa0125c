"""Turns `switchyard bench` arguments into settings and runs the benchmark (the parser is in proxy/cli.py)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from proxy.bench.run import run_bench
from proxy.bench.settings import FULL, QUICK, SECTIONS, BenchSettings


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    settings = QUICK if args.quick else FULL
    if args.scales:
        settings = replace(settings, scales=tuple(int(n.replace("_", "")) for n in args.scales.split(",")))
    if args.sections:
        wanted = tuple(s.strip() for s in args.sections.split(",") if s.strip())
        unknown = sorted(set(wanted) - set(SECTIONS))
        if unknown:
            raise SystemExit(
                f"switchyard bench: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}"
            )
        settings = replace(settings, sections=wanted)
    real_model = None if args.real_model == "none" else args.real_model
    return replace(settings, real_model=real_model)


def command_line(args: argparse.Namespace) -> str:
    """The command as it would be typed to repeat this run (scratch and output paths left out)."""
    parts = ["switchyard bench"]
    if args.quick:
        parts.append("--quick")
    if args.scales:
        parts.append(f"--scales {args.scales}")
    if args.sections:
        parts.append(f"--sections {args.sections}")
    if args.real_model != "e5-small":
        parts.append(f"--real-model {args.real_model}")
    return " ".join(parts)


def run_bench_command(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    workdir = Path(args.workdir) if args.workdir else None
    run = run_bench(settings, Path(args.out_dir), command_line(args), workdir)
    out = Path(args.out_dir)
    print(f"wrote {out / 'BENCHMARKS.md'} and {out / 'BENCHMARKS.json'} in {run.duration_s / 60:.1f} min")
    for section, error in run.errors.items():
        print(f"switchyard bench: section {section} failed: {error}", file=sys.stderr)
    return 1 if run.errors else 0
