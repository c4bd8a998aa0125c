"""Adopting an application's own Milvus collection: the checks that refuse it (changing nothing), the
collection of Switchyard's own beside it, and the migration from the one to the other, on a real milvus-lite
engine. The "application" writes its collection with pymilvus and embeds with the old model itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pymilvus import DataType, MilvusClient

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.adapters.milvus.adopted_index import AdoptedCollectionIndex
from proxy.app.adoption import AdoptionRefused, model_from_spec
from proxy.app.adoption_milvus import (
    MilvusAdoptRequest,
    apply_milvus_plan,
    milvus_config_dict,
    plan_milvus_adoption,
)
from proxy.app.assembly import build_app
from proxy.app.config import parse_config
from proxy.cli.main import main
from proxy.core.errors import FailedPrecondition
from proxy.core.model import IndexRecord, RoutingMode
from proxy.core.ports import KeyOrder, iter_all
from proxy.core.service import QueryInput
from tests.migration_support import drain

DIM = 32
OLD = HashingEmbedder("old", DIM, 1)
LANGS = ("en", "de", "fr")


def _text(n: int) -> tuple[str, str]:
    return f"title {n} about topic {n % 7}", f"body of article {n}: words {n * 3} and {n % 11}"


@pytest.fixture
def uri(tmp_path: Path) -> str:
    """A milvus-lite engine holding the application's `articles` collection: INT64 key, two text fields, two
    scalar fields and the old model's vectors; 250 entities."""
    path = str(tmp_path / "app.db")
    client = MilvusClient(path)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("article_id", DataType.INT64, is_primary=True)
    schema.add_field("title", DataType.VARCHAR, max_length=256)
    schema.add_field("body", DataType.VARCHAR, max_length=1024)
    schema.add_field("lang", DataType.VARCHAR, max_length=8)
    schema.add_field("year", DataType.INT64)
    schema.add_field("rating", DataType.FLOAT)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
    params = client.prepare_index_params()
    params.add_index(
        "embedding", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 64}
    )
    client.create_collection("articles", schema=schema, index_params=params)
    texts = [_text(n) for n in range(250)]
    vectors = OLD.embed([f"{t}\n{b}" for t, b in texts])
    client.insert(
        "articles",
        [
            {
                # Keys whose string order is not their numeric order: 9 < 10 < 100 as integers only.
                "article_id": n * 9 + 1,
                "title": title,
                "body": body,
                "lang": LANGS[n % 3],
                "year": 2000 + n % 20,
                "rating": 0.5,
                "embedding": vector.tolist(),
            }
            for n, ((title, body), vector) in enumerate(zip(texts, vectors, strict=True))
        ],
    )
    return path


def _request(uri: str, **changed: Any) -> MilvusAdoptRequest:
    options: dict[str, Any] = {
        "uri": uri,
        "collection": "articles",
        "id_field": "article_id",
        "vector_field": "embedding",
        "text_fields": ("title", "body"),
        "metadata_fields": ("lang", "year"),
        "old": model_from_spec(f"hashing:{DIM}:1"),
        "new": model_from_spec("hashing:24:2"),
        **changed,
    }
    return MilvusAdoptRequest(**options)


def _collections(uri: str) -> list[str]:
    return sorted(MilvusClient(uri).list_collections())


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        (
            {"text_fields": ("title", "summary")},
            "collection articles has no field summary (its fields: article_id INT64",
        ),
        (
            {"old": model_from_spec("hashing:16:1")},
            "vector field embedding has dim 32 but the old model gives 16",
        ),
        (
            {"id_field": "rating"},
            "id field rating is not the primary key of collection articles; its primary key is article_id",
        ),
        ({"text_fields": ("title", "year")}, "text field year is INT64; a text field is VARCHAR"),
        ({"collection": "posts"}, "no collection posts at"),
        ({"old": model_from_spec(f"hashing:{DIM}:5")}, "sample check failed"),
    ],
)
def test_refusals_name_the_problem_and_change_nothing(
    uri: str, changed: dict[str, Any], message: str
) -> None:
    before = _collections(uri)
    with pytest.raises(AdoptionRefused) as info:
        plan_milvus_adoption(_request(uri, **changed))
    assert message in str(info.value)
    assert _collections(uri) == before == ["articles"]


def test_adopted_collection_migrates_to_a_collection_of_its_own(uri: str, tmp_path: Path) -> None:
    request = _request(uri, data_dir=str(tmp_path / "data"))
    plan = plan_milvus_adoption(request)
    assert (plan.rows, plan.vector_dim, plan.space) == (250, DIM, "cosine")
    assert plan.sample is not None and plan.sample.median > 0.999
    assert plan.new_collection_rows is None
    apply_milvus_plan(request, plan)
    assert _collections(uri) == ["articles", plan.new_collection]
    app = build_app(parse_config(milvus_config_dict(request, plan)))
    try:
        old, new = app.bindings["hashing-32-1"].index, app.bindings["hashing-24-2"].index
        assert isinstance(old, AdoptedCollectionIndex) and isinstance(old, KeyOrder)
        # The old leg reads the application's entities as they are, in key order, and refuses writes.
        ids = [d.id for d in iter_all(old, batch=40)]
        assert ids == [str(n * 9 + 1) for n in range(250)]
        [first] = old.get(["10"])
        assert (first.text, first.metadata, first.version) == (
            "\n".join(_text(1)),
            {"lang": "de", "year": "2001"},
            1,
        )
        with pytest.raises(FailedPrecondition, match="application's Milvus collection 'articles'"):
            old.upsert([IndexRecord("1", 2, "x", {}, OLD.embed(["x"])[0])])
        hit = app.service.query(QueryInput(k=3, text="\n".join(_text(40)), where={"lang": LANGS[40 % 3]}))
        assert hit.hits[0].id == str(40 * 9 + 1)

        assert app.controller is not None
        app.controller.start()
        drain(app)
        assert new.count() == 250
        assert {d.id: (d.version, d.text, d.metadata) for d in new.get(ids)} == {
            d.id: (d.version, d.text, d.metadata) for d in old.get(ids)
        }
        status = app.controller.status()
        assert (status.backfill.done, status.coverage) == (250, 1.0)
        filtered = app.service.query(
            QueryInput(k=5, text="\n".join(_text(77)), where={"year": "2017"}, override=RoutingMode.NEW)
        )
        assert filtered.hits[0].id == str(77 * 9 + 1) and {h.metadata["year"] for h in filtered.hits} == {
            "2017"
        }
        assert {h.index for h in filtered.hits} == {"hashing-24-2"}

        for phase in ("validated", "shifting"):
            app.controller.transition(phase)
        # Forced: the validation gates are the promotion tests' subject, not this one's.
        app.controller.transition("cut_over", force=True, reason="milvus adoption test")
        served = app.service.query(QueryInput(k=3, text="\n".join(_text(5))))
        assert served.hits[0].id == str(5 * 9 + 1) and {h.index for h in served.hits} == {"hashing-24-2"}
        app.controller.transition("old_retired")
        # Retiring keeps the application's collection: there is nothing Switchyard may drop in it.
        assert app.controller.run_once() == 0
        assert old.count() == 250
    finally:
        app.close()
    # The application's collection is as it was.
    assert MilvusClient(uri).query("articles", filter="", output_fields=["count(*)"])[0]["count(*)"] == 250


def test_cli_dry_run_creates_nothing_and_apply_creates_the_collection(uri: str, tmp_path: Path) -> None:
    out = tmp_path / "adopted.yaml"
    args = [
        "adopt",
        "--milvus-uri",
        uri,
        "--table",
        "articles",
        "--id-column",
        "article_id",
        "--vector-column",
        "embedding",
        "--text-columns",
        "title,body",
        "--metadata-columns",
        "lang,year",
        "--old-model",
        f"hashing:{DIM}:1",
        "--new-model",
        "hashing:24:2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert _collections(uri) == ["articles"]
    written = yaml.safe_load(out.read_text())
    assert written["indexes"]["hashing-32-1"]["milvus"]["adopt"]["vector_field"] == "embedding"
    assert main([*args, "--apply"]) == 0
    assert _collections(uri) == ["articles", "switchyard_articles_hashing_24_2"]
    assert main([*args[:-2], "--out", str(tmp_path / "x.yaml"), "--text-columns", "title,summary"]) == 1
