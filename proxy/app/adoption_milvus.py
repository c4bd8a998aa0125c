"""`switchyard adopt --milvus-uri`: the adoption steps of `adoption` for an application's Milvus collection.

The steps are pgvector's (resolve the models, check the collection's shape against the request and the old
model, count, check the text is there, re-embed a sample and compare, plan, apply, write the config); what
differs is in the adapter (`adapters/milvus/inspect.py`, `adopted_collection.py`): there are no triggers to
install, so the plan is one new collection beside the application's, and Switchyard does not see writes the
application makes to its collection directly (README: "Adopting a Milvus collection").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.adapters.milvus import MilvusIndex, default_adopted_collection
from proxy.adapters.milvus.adopted_collection import CollectionSpec, shape_problem
from proxy.adapters.milvus.connection import is_local
from proxy.adapters.milvus.inspect import CollectionInspector
from proxy.app.adoption import ModelChoice
from proxy.app.adoption_checks import MAX_EMPTY_SHARE, AdoptionRefused, SampleCheck, judge_sample
from proxy.app.config import parse_config
from proxy.app.wiring import build_embedder
from proxy.migration.retirement import StoragePolicy


@dataclass(frozen=True)
class MilvusAdoptRequest:
    """What to adopt and how, as the operator gave it."""

    uri: str
    collection: str
    id_field: str
    vector_field: str
    text_fields: tuple[str, ...]
    old: ModelChoice
    new: ModelChoice
    metadata_fields: tuple[str, ...] = ()
    token: str | None = None
    token_env: str | None = None
    """Written to the config (the token itself never is)."""
    sample: int = 32
    redis_url: str | None = None
    data_dir: str = "switchyard-data"

    def spec(self) -> CollectionSpec:
        try:
            return CollectionSpec(self.collection, self.id_field, self.text_fields, self.metadata_fields)
        except ValueError as exc:
            raise AdoptionRefused(str(exc)) from None


@dataclass(frozen=True)
class MilvusAdoptionPlan:
    spec: CollectionSpec
    fields: dict[str, str]
    """Every field of the collection with its type, for the printout."""
    rows: int
    empty_text: dict[str, int]
    vector_dim: int
    new_dim: int
    space: str
    sample: SampleCheck | None
    new_collection: str
    new_collection_rows: int | None
    """None: it does not exist yet (`apply` creates it)."""
    notes: list[str] = field(default_factory=list)


def plan_milvus_adoption(request: MilvusAdoptRequest) -> MilvusAdoptionPlan:
    """Every check, then the plan; reads only. AdoptionRefused says what to fix."""
    spec = request.spec()
    if request.vector_field in (spec.id_field, *spec.text_fields, *spec.metadata_fields):
        raise AdoptionRefused(f"{request.vector_field} cannot be the vector field and a key/text field")
    old, new = (build_embedder(m.name, m.config) for m in (request.old, request.new))
    inspector = CollectionInspector(request.uri, request.token)
    try:
        if not inspector.exists(spec.collection):
            known = ", ".join(inspector.collections()) or "none"
            raise AdoptionRefused(
                f"no collection {spec.collection} at {inspector.uri} (its collections: {known})"
            )
        fields = inspector.fields(spec.collection)
        problem = shape_problem(fields, spec, request.vector_field, old.dim)
        if problem is not None:
            raise AdoptionRefused(problem)
        metric = inspector.metric(spec.collection, request.vector_field)
        rows = inspector.count(spec.collection)
        empty = inspector.empty_text(spec)
        _check_text(empty, rows)
        samples = inspector.sample(spec, request.vector_field, request.sample)
        sample = judge_sample(samples, old) if samples else None
        target = default_adopted_collection(spec.collection, request.new.name)
        existing = inspector.count(target) if inspector.exists(target) else None
    finally:
        inspector.close()
    notes = [] if sample is not None else ["no entity has text: the sample check was skipped"]
    if metric not in ("COSINE", "IP"):
        notes.append(
            f"the vector field's index uses {metric or 'no'} metric; Switchyard queries the old leg by cosine"
            " similarity: its searches will not match the application's own until that index is COSINE"
        )
    if existing:
        notes.append(
            f"collection {target} exists with {existing:,} entities: kept, the backfill goes on from them"
        )
    return MilvusAdoptionPlan(
        spec=spec,
        fields={name: f["type"].name for name, f in fields.items()},
        rows=rows,
        empty_text=empty,
        vector_dim=old.dim,
        new_dim=new.dim,
        space="ip" if metric == "IP" else "cosine",
        sample=sample,
        new_collection=target,
        new_collection_rows=existing,
        notes=notes,
    )


def _check_text(empty: dict[str, int], rows: int) -> None:
    for name, count in empty.items():
        if rows and count > MAX_EMPTY_SHARE * rows:
            raise AdoptionRefused(
                f"text field {name} is empty in {100.0 * count / rows:.0f}% of the entities ({count} of {rows}):"
                " the models would embed little or nothing; check --text-columns"
            )


def apply_milvus_plan(request: MilvusAdoptRequest, plan: MilvusAdoptionPlan) -> None:
    """Creates the new model's collection (with its HNSW index) beside the application's: the only change."""
    MilvusIndex(
        request.new.name,
        plan.new_dim,
        request.uri,
        collection=plan.new_collection,
        token=request.token,
    ).close()


def milvus_config_dict(request: MilvusAdoptRequest, plan: MilvusAdoptionPlan) -> dict[str, Any]:
    """The config that serves the collection in place (old leg: its vector field) and migrates it to a
    collection of the new model's vectors; checked with parse_config."""
    # A relative `.db` path in the config is read under data_dir: write the one the checks used.
    uri = str(Path(request.uri).resolve()) if is_local(request.uri) else request.uri
    connection: dict[str, Any] = {
        "uri": uri,
        **({"token_env": request.token_env} if request.token_env else {}),
    }

    def adopt(**vector: str) -> dict[str, Any]:
        # Fresh lists per index: shared objects would be written as YAML anchors.
        return {
            "collection": plan.spec.collection,
            "id_field": plan.spec.id_field,
            "text_fields": list(plan.spec.text_fields),
            **({"metadata_fields": list(plan.spec.metadata_fields)} if plan.spec.metadata_fields else {}),
            **vector,
        }

    old, new = request.old.name, request.new.name
    state: dict[str, Any] = {"backend": "local"}
    if request.redis_url:
        state = {"backend": "redis", "redis_url": request.redis_url}
    config: dict[str, Any] = {
        "data_dir": request.data_dir,
        "models": {old: request.old.entry, new: request.new.entry},
        "indexes": {
            old: {
                "model": old,
                "backend": "milvus",
                "space": plan.space,
                "milvus": {**connection, "adopt": adopt(vector_field=request.vector_field)},
            },
            new: {
                "model": new,
                "backend": "milvus",
                "milvus": {**connection, "collection": plan.new_collection, "adopt": adopt()},
            },
        },
        "serving_index": old,
        "migration": {"old_index": old, "new_index": new, "storage_policy": StoragePolicy.KEEP_OLD.value},
        "state": state,
    }
    parse_config(config, "the adopted config")
    return config
