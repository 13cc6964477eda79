"""Settings, read once at start-up and passed down.

Every value comes from the environment (``CITYFIX_*``, nested sections joined with ``__``,
e.g. ``CITYFIX_PG__PORT=5433``) or a ``.env`` file in the working directory. Nothing in
the project reads the environment anywhere else. Secrets keep their development defaults
only when ``env`` is ``development`` or ``test``; anywhere else they must be set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.clock import Clock
from core.errors import ConfigError

_DEV_SECRET_PREFIX = "dev-"  # noqa: S105 - a marker, not a secret


class MqttSettings(BaseModel):
    """Mosquitto: where it listens and the credentials of cityfix's own services."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    service_username: str = "cityfix-service"
    service_password: SecretStr = SecretStr("dev-service-secret")
    keepalive_s: int = Field(30, ge=5)
    max_inflight: int = Field(1000, ge=1, le=65535)


class KafkaSettings(BaseModel):
    """Kafka: bootstrap address and the local single-node broker's ports and heap."""

    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    version: str = "3.9.1"
    heap_mb: int = Field(1024, ge=256)
    default_partitions: int = Field(6, ge=1)

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` a client connects to."""
        return f"{self.host}:{self.port}"


class PostgresSettings(BaseModel):
    """PostgreSQL (with TimescaleDB when installed)."""

    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)
    # Plain SQL identifiers: the runner creates them with superuser SQL.
    user: str = Field("cityfix", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    password: SecretStr = SecretStr("dev-db-secret")
    database: str = Field("cityfix", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    @property
    def dsn(self) -> str:
        """A libpq connection string."""
        return (
            f"host={self.host} port={self.port} dbname={self.database} "
            f"user={self.user} password={self.password.get_secret_value()}"
        )


class GeoSettings(BaseModel):
    """The city and its road graph."""

    city: str = "porto_portugal"
    osm_dir: Path = Path("data/osm")
    cache_dir: Path = Path(".services/cache/geo")
    service_area_buffer_m: float = Field(250.0, ge=0)
    district_grid_m: float = Field(2000.0, gt=0)
    poi_radius_m: float = Field(300.0, gt=0)
    # Worker processes for big travel-time matrices (hundreds of origins); 1 = in-process.
    # Used by a main process with no other thread (a CLI, a benchmark); pool workers and
    # threaded services always search in-process.
    matrix_processes: int = Field(2, ge=1)
    # An address naming only a street (or a house number the map lacks) is placed at the
    # street's middle only when every node of the street is within this distance of it;
    # a longer street needs a house number on the map or a cross street (geo.geocode).
    geocode_street_radius_m: float = Field(150.0, gt=0)


class StreamsSettings(BaseModel):
    """Faust worker: dedup windows, scoring, lifecycle."""

    data_dir: Path = Path(".services/streams")
    web_port: int = Field(6066, ge=1, le=65535)
    cell_size_m: float = Field(250.0, gt=0)
    reopen_window_s: float = Field(7 * 24 * 3600.0, ge=0)
    aging_interval_s: float = Field(60.0, gt=0)
    close_after_s: float = Field(24 * 3600.0, ge=0)
    max_road_offset_m: float = Field(150.0, gt=0)
    rescore_epsilon_points: float = Field(0.5, ge=0)
    p1_min_score: float = Field(70.0)
    p2_min_score: float = Field(45.0)
    p3_min_score: float = Field(25.0)
    index_refresh_s: float = Field(60.0, gt=0)
    publish_request_status: bool = True
    # Offsets are committed only once MQTT acknowledged the request statuses published
    # before: a commit waits for that this long at a time, again until it happens, or
    # until the worker stops or gives its partitions up (streams.offsets).
    status_ack_wait_s: float = Field(5.0, gt=0)
    store: str = "rocksdb://"
    app_id: str = "cityfix-streams"
    broker_session_timeout_s: float = Field(30.0, gt=0)
    broker_heartbeat_interval_s: float = Field(3.0, gt=0)
    producer_linger_ms: float = Field(5.0, ge=0)
    # The raw-input agents snap reports and alerts in batches: up to this many, or what
    # arrived within this wait (one vectorised snap per batch).
    locate_batch_max: int = Field(500, ge=1)
    locate_batch_wait_ms: float = Field(20.0, gt=0)
    # The cell agent handles messages in batches: up to this many, or what arrived within
    # this wait; table writes and incident records are coalesced per key over a batch.
    # Longer waits make fuller batches under load, which costs less per event: with 5 ms
    # instead of 20 ms, a worker of bench_streams could not keep up with 400 events/s.
    cell_batch_max: int = Field(500, ge=1)
    cell_batch_wait_ms: float = Field(20.0, gt=0)
    # Plain PostgreSQL only (TimescaleDB runs its own policies): how often a store worker
    # refreshes the dashboard views, and how long raw telemetry is kept.
    store_upkeep_interval_s: float = Field(300.0, gt=0)
    telemetry_keep_days: float = Field(30.0, gt=0)
    # A partition whose committed record stays unacknowledged while later ones are
    # acknowledged for this long is read again from its committed offset (streams.offsets).
    offset_hole_repair_s: float = Field(2.0, gt=0)
    # What a worker runs: "all" (dedup, scoring, lifecycle and the store sinks), "dedup"
    # (all but the sinks) or "store" (only the sinks, as the consumer group
    # "{app_id}-store"); a deployment runs "dedup" and "store" workers side by side to
    # keep the sinks' database writes off the dedup path.
    role: Literal["all", "dedup", "store"] = "all"

    @property
    def worker_app_id(self) -> str:
        """The Faust app id, and so the consumer group, of a worker with this role."""
        return f"{self.app_id}-store" if self.role == "store" else self.app_id


class DispatchSettings(BaseModel):
    """OR-Tools model and the re-planning loop."""

    time_limit_s: float = Field(2.0, gt=0)
    first_solution: str = "LOCAL_CHEAPEST_INSERTION"
    metaheuristic: str = "GUIDED_LOCAL_SEARCH"
    # Processes one solve may keep busy: 2 lets a helper process re-plan parts of a large
    # problem alongside the solving one (dispatch.solver); 1 keeps a solve in its process.
    search_processes: int = Field(2, ge=1, le=2)
    debounce_s: float = Field(1.0, ge=0)
    replan_interval_s: float = Field(60.0, gt=0)
    reshuffle_penalty_s: int = Field(600, ge=0)
    lateness_cost_per_s: int = Field(1, ge=0)
    drop_penalty_base_s: int = Field(24 * 3600, ge=0)
    # When an incident or a crew leaves these out of its message.
    default_service_s: float = Field(45 * 60.0, ge=0)
    default_shift_s: float = Field(8 * 3600.0, gt=0)
    client_id: str = "cityfix-dispatch"


class IngestSettings(BaseModel):
    """The MQTT -> Kafka bridge."""

    client_id: str = "cityfix-ingest"
    share_group: str = "ingest"
    metrics_port: int = Field(9101, ge=1, le=65535)
    max_payload_bytes: int = Field(64 * 1024, ge=256)


class ApiSettings(BaseModel):
    """The FastAPI service."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    secret_key: SecretStr = SecretStr("dev-insecure-signing-key-change-me")
    token_ttl_s: int = Field(8 * 3600, gt=0)
    jurisdiction_id: str = "cityfix.local"
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    post_rate_per_min: int = Field(30, ge=1)
    post_rate_per_address_per_min: int = Field(60, ge=1)
    login_rate_per_address_per_min: int = Field(30, ge=1)
    publish_timeout_s: float = Field(5.0, gt=0)
    readiness_timeout_s: float = Field(2.0, gt=0)
    pg_pool_max: int = Field(10, ge=1)
    static_dir: Path = Path("api/static/dist")
    answer_cache_s: float = Field(1.0, ge=0)
    user_cache_s: float = Field(2.0, ge=0)


class ClockSettings(BaseModel):
    """The shared clock; see ``core.clock``."""

    factor: float = Field(1.0, gt=0)
    wall_epoch_s: float | None = None
    sim_epoch_s: float | None = None


class Settings(BaseSettings):
    """All of cityfix's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="CITYFIX_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    env: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_json: bool = False
    services_dir: Path = Path(".services")

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    pg: PostgresSettings = Field(default_factory=PostgresSettings)
    geo: GeoSettings = Field(default_factory=GeoSettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    clock: ClockSettings = Field(default_factory=ClockSettings)

    @model_validator(mode="after")
    def _no_default_secrets_outside_development(self) -> Settings:
        if self.env in ("development", "test"):
            return self
        secrets = {
            "mqtt.service_password": self.mqtt.service_password,
            "pg.password": self.pg.password,
            "api.secret_key": self.api.secret_key,
        }
        weak = [
            k for k, v in secrets.items() if v.get_secret_value().startswith(_DEV_SECRET_PREFIX)
        ]
        if weak:
            raise ConfigError(
                f"env={self.env} needs real secrets; still at development defaults: "
                + ", ".join(weak)
            )
        return self

    def make_clock(self) -> Clock:
        """The process's clock, built from the shared anchor."""
        return Clock(self.clock.factor, self.clock.wall_epoch_s, self.clock.sim_epoch_s)


def load_settings() -> Settings:
    """Read the settings once; the CLI calls this and passes the result down."""
    return Settings()
