from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetMigrationStatusRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class PhaseChange(_message.Message):
    __slots__ = ("from_phase", "to_phase", "at_unix", "reason")
    FROM_PHASE_FIELD_NUMBER: _ClassVar[int]
    TO_PHASE_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    from_phase: str
    to_phase: str
    at_unix: float
    reason: str
    def __init__(self, from_phase: _Optional[str] = ..., to_phase: _Optional[str] = ..., at_unix: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class BackfillProgress(_message.Message):
    __slots__ = ("done", "total", "rate", "eta_seconds", "paused", "throttle_reason", "rate_limit", "lazy_queue_depth", "pending_repairs", "complete", "query_p99_ms", "latency_budget_ms", "throttle_duty", "direct_writes_pending")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_REASON_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    LAZY_QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    PENDING_REPAIRS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    QUERY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_DUTY_FIELD_NUMBER: _ClassVar[int]
    DIRECT_WRITES_PENDING_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    rate: float
    eta_seconds: float
    paused: bool
    throttle_reason: str
    rate_limit: float
    lazy_queue_depth: int
    pending_repairs: int
    complete: bool
    query_p99_ms: float
    latency_budget_ms: float
    throttle_duty: float
    direct_writes_pending: int
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ..., rate: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., paused: _Optional[bool] = ..., throttle_reason: _Optional[str] = ..., rate_limit: _Optional[float] = ..., lazy_queue_depth: _Optional[int] = ..., pending_repairs: _Optional[int] = ..., complete: _Optional[bool] = ..., query_p99_ms: _Optional[float] = ..., latency_budget_ms: _Optional[float] = ..., throttle_duty: _Optional[float] = ..., direct_writes_pending: _Optional[int] = ...) -> None: ...

class StorageStatus(_message.Message):
    __slots__ = ("policy", "old_bytes", "new_bytes", "baseline_bytes", "peak_ratio", "retired")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    OLD_BYTES_FIELD_NUMBER: _ClassVar[int]
    NEW_BYTES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PEAK_RATIO_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    policy: str
    old_bytes: int
    new_bytes: int
    baseline_bytes: int
    peak_ratio: float
    retired: int
    def __init__(self, policy: _Optional[str] = ..., old_bytes: _Optional[int] = ..., new_bytes: _Optional[int] = ..., baseline_bytes: _Optional[int] = ..., peak_ratio: _Optional[float] = ..., retired: _Optional[int] = ...) -> None: ...

class PromotionStatus(_message.Message):
    __slots__ = ("auto", "steps", "step_started_at_unix", "events", "last_report_passed")
    AUTO_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_STARTED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_PASSED_FIELD_NUMBER: _ClassVar[int]
    auto: bool
    steps: _containers.RepeatedScalarFieldContainer[float]
    step_started_at_unix: float
    events: _containers.RepeatedScalarFieldContainer[str]
    last_report_passed: bool
    def __init__(self, auto: _Optional[bool] = ..., steps: _Optional[_Iterable[float]] = ..., step_started_at_unix: _Optional[float] = ..., events: _Optional[_Iterable[str]] = ..., last_report_passed: _Optional[bool] = ...) -> None: ...

class GetMigrationStatusResponse(_message.Message):
    __slots__ = ("migration_id", "old_index", "new_index", "phase", "backfill", "coverage", "traffic_percent", "history", "storage", "promotion", "collection", "new_model_load", "search_index")
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_INDEX_FIELD_NUMBER: _ClassVar[int]
    NEW_INDEX_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_PERCENT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NEW_MODEL_LOAD_FIELD_NUMBER: _ClassVar[int]
    SEARCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    old_index: str
    new_index: str
    phase: str
    backfill: BackfillProgress
    coverage: float
    traffic_percent: float
    history: _containers.RepeatedCompositeFieldContainer[PhaseChange]
    storage: StorageStatus
    promotion: PromotionStatus
    collection: str
    new_model_load: EmbedderLoad
    search_index: str
    def __init__(self, migration_id: _Optional[str] = ..., old_index: _Optional[str] = ..., new_index: _Optional[str] = ..., phase: _Optional[str] = ..., backfill: _Optional[_Union[BackfillProgress, _Mapping]] = ..., coverage: _Optional[float] = ..., traffic_percent: _Optional[float] = ..., history: _Optional[_Iterable[_Union[PhaseChange, _Mapping]]] = ..., storage: _Optional[_Union[StorageStatus, _Mapping]] = ..., promotion: _Optional[_Union[PromotionStatus, _Mapping]] = ..., collection: _Optional[str] = ..., new_model_load: _Optional[_Union[EmbedderLoad, _Mapping]] = ..., search_index: _Optional[str] = ...) -> None: ...

class EmbedderLoad(_message.Message):
    __slots__ = ("model", "in_flight", "concurrency", "max_concurrency", "requests_last_minute", "tokens_last_minute", "requests_per_minute_budget", "tokens_per_minute_budget", "throttled", "retries", "batch_cap")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_LAST_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_LAST_MINUTE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    BATCH_CAP_FIELD_NUMBER: _ClassVar[int]
    model: str
    in_flight: int
    concurrency: int
    max_concurrency: int
    requests_last_minute: int
    tokens_last_minute: int
    requests_per_minute_budget: float
    tokens_per_minute_budget: float
    throttled: int
    retries: int
    batch_cap: int
    def __init__(self, model: _Optional[str] = ..., in_flight: _Optional[int] = ..., concurrency: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., requests_last_minute: _Optional[int] = ..., tokens_last_minute: _Optional[int] = ..., requests_per_minute_budget: _Optional[float] = ..., tokens_per_minute_budget: _Optional[float] = ..., throttled: _Optional[int] = ..., retries: _Optional[int] = ..., batch_cap: _Optional[int] = ...) -> None: ...

class StartMigrationRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class StartMigrationResponse(_message.Message):
    __slots__ = ("phase",)
    PHASE_FIELD_NUMBER: _ClassVar[int]
    phase: str
    def __init__(self, phase: _Optional[str] = ...) -> None: ...

class PauseMigrationRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class PauseMigrationResponse(_message.Message):
    __slots__ = ("phase",)
    PHASE_FIELD_NUMBER: _ClassVar[int]
    phase: str
    def __init__(self, phase: _Optional[str] = ...) -> None: ...

class ResumeMigrationRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class ResumeMigrationResponse(_message.Message):
    __slots__ = ("phase",)
    PHASE_FIELD_NUMBER: _ClassVar[int]
    phase: str
    def __init__(self, phase: _Optional[str] = ...) -> None: ...

class SetBackfillRateRequest(_message.Message):
    __slots__ = ("docs_per_second", "collection")
    DOCS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    docs_per_second: float
    collection: str
    def __init__(self, docs_per_second: _Optional[float] = ..., collection: _Optional[str] = ...) -> None: ...

class SetBackfillRateResponse(_message.Message):
    __slots__ = ("docs_per_second",)
    DOCS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    docs_per_second: float
    def __init__(self, docs_per_second: _Optional[float] = ...) -> None: ...

class SetTrafficSplitRequest(_message.Message):
    __slots__ = ("percent", "collection")
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    percent: float
    collection: str
    def __init__(self, percent: _Optional[float] = ..., collection: _Optional[str] = ...) -> None: ...

class SetTrafficSplitResponse(_message.Message):
    __slots__ = ("percent",)
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    percent: float
    def __init__(self, percent: _Optional[float] = ...) -> None: ...

class TransitionMigrationRequest(_message.Message):
    __slots__ = ("to_phase", "force", "reason", "collection")
    TO_PHASE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    to_phase: str
    force: bool
    reason: str
    collection: str
    def __init__(self, to_phase: _Optional[str] = ..., force: _Optional[bool] = ..., reason: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class TransitionMigrationResponse(_message.Message):
    __slots__ = ("phase",)
    PHASE_FIELD_NUMBER: _ClassVar[int]
    phase: str
    def __init__(self, phase: _Optional[str] = ...) -> None: ...

class GoldenQuery(_message.Message):
    __slots__ = ("query", "relevant")
    class RelevantEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    QUERY_FIELD_NUMBER: _ClassVar[int]
    RELEVANT_FIELD_NUMBER: _ClassVar[int]
    query: str
    relevant: _containers.ScalarMap[str, float]
    def __init__(self, query: _Optional[str] = ..., relevant: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ValidateMigrationRequest(_message.Message):
    __slots__ = ("golden", "collection")
    GOLDEN_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    golden: _containers.RepeatedCompositeFieldContainer[GoldenQuery]
    collection: str
    def __init__(self, golden: _Optional[_Iterable[_Union[GoldenQuery, _Mapping]]] = ..., collection: _Optional[str] = ...) -> None: ...

class Gate(_message.Message):
    __slots__ = ("name", "value", "has_value", "threshold", "passed", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HAS_VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    has_value: bool
    threshold: float
    passed: bool
    detail: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., has_value: _Optional[bool] = ..., threshold: _Optional[float] = ..., passed: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class ValidateMigrationResponse(_message.Message):
    __slots__ = ("passed", "gates", "report_json", "report_text")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    REPORT_TEXT_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    gates: _containers.RepeatedCompositeFieldContainer[Gate]
    report_json: str
    report_text: str
    def __init__(self, passed: _Optional[bool] = ..., gates: _Optional[_Iterable[_Union[Gate, _Mapping]]] = ..., report_json: _Optional[str] = ..., report_text: _Optional[str] = ...) -> None: ...

class PromoteMigrationRequest(_message.Message):
    __slots__ = ("reason", "collection")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    reason: str
    collection: str
    def __init__(self, reason: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class PromoteMigrationResponse(_message.Message):
    __slots__ = ("percent", "phase")
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    percent: float
    phase: str
    def __init__(self, percent: _Optional[float] = ..., phase: _Optional[str] = ...) -> None: ...

class RollbackMigrationRequest(_message.Message):
    __slots__ = ("reason", "force", "collection")
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    reason: str
    force: bool
    collection: str
    def __init__(self, reason: _Optional[str] = ..., force: _Optional[bool] = ..., collection: _Optional[str] = ...) -> None: ...

class RollbackMigrationResponse(_message.Message):
    __slots__ = ("phase",)
    PHASE_FIELD_NUMBER: _ClassVar[int]
    phase: str
    def __init__(self, phase: _Optional[str] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CollectionSummary(_message.Message):
    __slots__ = ("name", "is_default", "serving_index", "old_index", "new_index", "phase", "coverage", "traffic_percent", "backfill_done", "backfill_total")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    SERVING_INDEX_FIELD_NUMBER: _ClassVar[int]
    OLD_INDEX_FIELD_NUMBER: _ClassVar[int]
    NEW_INDEX_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_PERCENT_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_DONE_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_TOTAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    is_default: bool
    serving_index: str
    old_index: str
    new_index: str
    phase: str
    coverage: float
    traffic_percent: float
    backfill_done: int
    backfill_total: int
    def __init__(self, name: _Optional[str] = ..., is_default: _Optional[bool] = ..., serving_index: _Optional[str] = ..., old_index: _Optional[str] = ..., new_index: _Optional[str] = ..., phase: _Optional[str] = ..., coverage: _Optional[float] = ..., traffic_percent: _Optional[float] = ..., backfill_done: _Optional[int] = ..., backfill_total: _Optional[int] = ...) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionSummary]
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionSummary, _Mapping]]] = ...) -> None: ...
