"""Builds adapters from the config: the one place that knows which class implements which port."""

from __future__ import annotations

from pathlib import Path

from proxy.adapters.embed_hashing import HashingEmbedder
from proxy.adapters.index_hnsw import HnswIndex
from proxy.adapters.state_local import LocalStateStore
from proxy.adapters.state_redis import RedisStateStore
from proxy.config import IndexConfig, ModelConfig, StateConfig, SwitchyardConfig
from proxy.core.binding import IndexBinding
from proxy.ports import Embedder, StateStore, VectorIndex


def build_embedder(name: str, config: ModelConfig) -> Embedder:
    return HashingEmbedder(model=name, dim=config.dim, seed=config.seed)


def build_index(name: str, config: IndexConfig, dim: int, data_dir: Path) -> VectorIndex:
    params = config.hnsw
    return HnswIndex(
        name,
        dim,
        data_dir / "indexes" / name,
        space=config.space,
        m=params.m,
        ef_construction=params.ef_construction,
        ef_search=params.ef_search,
        initial_capacity=params.initial_capacity,
    )


def build_state(config: StateConfig, data_dir: Path) -> StateStore:
    if config.backend == "redis":
        return RedisStateStore(config.redis_url, config.namespace)
    data_dir.mkdir(parents=True, exist_ok=True)
    return LocalStateStore(data_dir / "state.sqlite3", config.namespace)


def build_bindings(config: SwitchyardConfig) -> dict[str, IndexBinding]:
    """One binding per configured index, sharing one embedder object per model."""
    embedders = {name: build_embedder(name, m) for name, m in config.models.items()}
    bindings = {}
    for name, index_config in config.indexes.items():
        embedder = embedders[index_config.model]
        index = build_index(name, index_config, embedder.dim, config.data_dir)
        bindings[name] = IndexBinding(index, embedder)
    return bindings
