"""`switchyard adopt --milvus-uri`: the arguments and printout of a Milvus adoption (the work is
proxy/app/adoption_milvus.py; the arguments are `adopt`'s, --table naming the collection)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TextIO


def adopt_milvus(args: argparse.Namespace, out: TextIO) -> int:
    from proxy.app import adoption, adoption_milvus

    config_path = Path(args.config) if args.config else None
    out_path = Path(args.out)
    if config_path is not None and out_path.resolve() == config_path.resolve():
        raise adoption.AdoptionRefused("--out is the --config file: write the adopted config elsewhere")
    token = None
    if args.milvus_token_env:
        token = os.environ.get(args.milvus_token_env)
        if not token:
            raise adoption.AdoptionRefused(
                f"--milvus-token-env: environment variable {args.milvus_token_env} is not set"
            )
    old, new = adoption.resolve_models(config_path, args.old_model, args.new_model)
    request = adoption_milvus.MilvusAdoptRequest(
        uri=args.milvus_uri,
        token=token,
        token_env=args.milvus_token_env,
        collection=args.table,
        id_field=args.id_column,
        vector_field=args.vector_column,
        text_fields=_names(args.text_columns),
        metadata_fields=_names(args.metadata_columns),
        old=old,
        new=new,
        sample=args.sample,
        redis_url=args.redis_url,
        data_dir=args.data_dir,
    )
    plan = adoption_milvus.plan_milvus_adoption(request)
    config = adoption_milvus.milvus_config_dict(request, plan)
    _print_plan(request, plan, out)
    if args.apply:
        adoption_milvus.apply_milvus_plan(request, plan)
        print(f"Created collection {plan.new_collection}: the collection is adopted.", file=out)
    adoption.write_config(out_path, config)
    print(f"\nWrote {out_path}.", file=out)
    if not args.apply:
        print(
            "Dry run: nothing was changed. Run again with --apply to create the collection above.", file=out
        )
        return 0
    print(
        "Next:\n"
        f"  switchyard serve --config {out_path}      (the sidecar serves the collection from {args.vector_column})\n"
        "  switchyard migrate start                  (backfill the new model's vectors)\n"
        "  Milvus has no triggers: writes the application makes to its collection directly are not followed;"
        " pause them until the cut-over",
        file=out,
    )
    return 0


def _names(value: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in value.split(",") if n.strip())


def _print_plan(request: object, plan: object, out: TextIO) -> None:
    from proxy.app.adoption_milvus import MilvusAdoptionPlan, MilvusAdoptRequest

    assert isinstance(request, MilvusAdoptRequest) and isinstance(plan, MilvusAdoptionPlan)
    spec = plan.spec
    lines = [
        f"Collection {spec.collection} at {request.uri}",
        f"  entities        {plan.rows:,}",
        f"  primary key     {spec.id_field} ({plan.fields[spec.id_field]})",
        "  fields          " + ", ".join(f"{n} {t}" for n, t in plan.fields.items()),
        f"  vector field    {request.vector_field} dim {plan.vector_dim}, old model {request.old.name}: match",
        "  text            "
        + " + ".join(spec.text_fields)
        + " (newline-joined); empty: "
        + ", ".join(f"{n} {c:,}" for n, c in plan.empty_text.items()),
    ]
    if plan.sample is not None:
        lines.append(
            f"  sample check    {plan.sample.compared} entities re-embedded with {request.old.name}: cosine"
            f" similarity to the stored vectors median {plan.sample.median:.4f}, min {plan.sample.minimum:.4f}: ok"
        )
    created = "exists" if plan.new_collection_rows is not None else "to create"
    lines.append(
        f"  new model       {request.new.name} ({plan.new_dim} dimensions): collection {plan.new_collection}"
        f" ({created}: id VARCHAR primary key, version, deleted, text, metadata JSON, vector HNSW)"
    )
    lines += [f"  note            {note}" for note in plan.notes]
    print("\n".join(lines), file=out)
