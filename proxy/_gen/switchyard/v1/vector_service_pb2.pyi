from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoutingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTING_MODE_UNSPECIFIED: _ClassVar[RoutingMode]
    ROUTING_MODE_OLD: _ClassVar[RoutingMode]
    ROUTING_MODE_SHADOW: _ClassVar[RoutingMode]
    ROUTING_MODE_DUAL: _ClassVar[RoutingMode]
    ROUTING_MODE_NEW: _ClassVar[RoutingMode]
ROUTING_MODE_UNSPECIFIED: RoutingMode
ROUTING_MODE_OLD: RoutingMode
ROUTING_MODE_SHADOW: RoutingMode
ROUTING_MODE_DUAL: RoutingMode
ROUTING_MODE_NEW: RoutingMode

class Embedding(_message.Message):
    __slots__ = ("model", "values")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    model: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "text", "metadata", "embedding")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    metadata: _containers.ScalarMap[str, str]
    embedding: Embedding
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("documents", "collection")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    collection: str
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., collection: _Optional[str] = ...) -> None: ...

class DocumentVersion(_message.Message):
    __slots__ = ("id", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[DocumentVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[DocumentVersion, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("ids", "collection")
    IDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    collection: str
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., collection: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "missing_ids")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedCompositeFieldContainer[DocumentVersion]
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted: _Optional[_Iterable[_Union[DocumentVersion, _Mapping]]] = ..., missing_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("ids", "collection")
    IDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    collection: str
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., collection: _Optional[str] = ...) -> None: ...

class StoredDocument(_message.Message):
    __slots__ = ("id", "text", "metadata", "version", "indexes")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    metadata: _containers.ScalarMap[str, str]
    version: int
    indexes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., version: _Optional[int] = ..., indexes: _Optional[_Iterable[str]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("documents", "missing_ids")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[StoredDocument]
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, documents: _Optional[_Iterable[_Union[StoredDocument, _Mapping]]] = ..., missing_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("text", "embedding", "k", "filter", "routing_key", "mode", "include_text", "collection", "rerank_candidates")
    class FilterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ROUTING_KEY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TEXT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    RERANK_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    text: str
    embedding: Embedding
    k: int
    filter: _containers.ScalarMap[str, str]
    routing_key: str
    mode: RoutingMode
    include_text: bool
    collection: str
    rerank_candidates: int
    def __init__(self, text: _Optional[str] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ..., k: _Optional[int] = ..., filter: _Optional[_Mapping[str, str]] = ..., routing_key: _Optional[str] = ..., mode: _Optional[_Union[RoutingMode, str]] = ..., include_text: _Optional[bool] = ..., collection: _Optional[str] = ..., rerank_candidates: _Optional[int] = ...) -> None: ...

class RerankSummary(_message.Message):
    __slots__ = ("candidates", "uncovered", "embedded_now", "from_cache", "skipped", "time_ms", "fallback")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    UNCOVERED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDED_NOW_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    candidates: int
    uncovered: int
    embedded_now: int
    from_cache: int
    skipped: int
    time_ms: float
    fallback: str
    def __init__(self, candidates: _Optional[int] = ..., uncovered: _Optional[int] = ..., embedded_now: _Optional[int] = ..., from_cache: _Optional[int] = ..., skipped: _Optional[int] = ..., time_ms: _Optional[float] = ..., fallback: _Optional[str] = ...) -> None: ...

class QueryHit(_message.Message):
    __slots__ = ("id", "score", "metadata", "index", "model", "raw_score", "text", "version")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RAW_SCORE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    metadata: _containers.ScalarMap[str, str]
    index: str
    model: str
    raw_score: float
    text: str
    version: int
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., metadata: _Optional[_Mapping[str, str]] = ..., index: _Optional[str] = ..., model: _Optional[str] = ..., raw_score: _Optional[float] = ..., text: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("hits", "served_by", "coverage", "merge_strategy", "degraded", "failed_legs", "routing_reason", "rerank")
    HITS_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    MERGE_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    FAILED_LEGS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_REASON_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[QueryHit]
    served_by: RoutingMode
    coverage: float
    merge_strategy: str
    degraded: bool
    failed_legs: _containers.RepeatedScalarFieldContainer[str]
    routing_reason: str
    rerank: RerankSummary
    def __init__(self, hits: _Optional[_Iterable[_Union[QueryHit, _Mapping]]] = ..., served_by: _Optional[_Union[RoutingMode, str]] = ..., coverage: _Optional[float] = ..., merge_strategy: _Optional[str] = ..., degraded: _Optional[bool] = ..., failed_legs: _Optional[_Iterable[str]] = ..., routing_reason: _Optional[str] = ..., rerank: _Optional[_Union[RerankSummary, _Mapping]] = ...) -> None: ...
