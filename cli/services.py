"""The local service runner: Mosquitto, Kafka and PostgreSQL on 127.0.0.1.

``up`` is idempotent: it installs what is missing (Debian packages, the Kafka jars from
Maven Central), renders configuration from ``deploy/`` into ``.services/``, starts what is
not running, and waits until each server answers a real client (an MQTT CONNECT with the
service credentials, a Kafka metadata request, a SQL query). ``down`` stops by pid.
Everything lives under the git-ignored ``.services/`` of the checkout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from cli import mosquitto
from core.errors import ServiceUnavailable
from core.settings import Settings
from core.topics import KAFKA_TOPICS

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"

_T = TypeVar("_T")

# Debian packages per need; installed only when the probe command is missing.
_APT = {
    "mosquitto": ("mosquitto", ["mosquitto", "mosquitto-clients"]),
    "postgres": ("pg_ctl", ["postgresql"]),
    "java": ("java", ["default-jre-headless"]),
    "maven": ("mvn", ["maven"]),
    "chromium": ("chromium", ["chromium"]),
}


@dataclass
class ServiceState:
    """What ``status`` reports for one server."""

    name: str
    running: bool
    pid: int | None
    address: str
    rss_mb: float | None
    detail: str = ""


# --- helpers ---------------------------------------------------------------------------


def _apt_install(packages: list[str]) -> None:
    if shutil.which("apt-get") is None:
        raise ServiceUnavailable(f"cannot install {packages}: no apt-get on this machine")
    log.info("installing Debian packages %s", " ".join(packages))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)


def _which(binary: str) -> str | None:
    if binary == "pg_ctl":
        found = _pg_bindir()
        return str(found / "pg_ctl") if found else None
    return shutil.which(binary)


def ensure_packages(*needs: str) -> None:
    """Install the Debian packages behind ``needs`` when their binary is missing."""
    missing: list[str] = []
    for need in needs:
        probe, pkgs = _APT[need]
        if _which(probe) is None:
            missing += pkgs
    if missing:
        _apt_install(missing)


def _pg_bindir() -> Path | None:
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _rss_mb(pid: int | None) -> float | None:
    """Resident memory of a server: the process plus its direct children (PostgreSQL)."""
    if not _pid_alive(pid):
        return None
    total_kb = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = dict(
                line.split(":", 1) for line in (proc / "status").read_text().splitlines()
            )
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        if proc.name == str(pid) or fields.get("PPid", "").strip() == str(pid):
            total_kb += int(fields.get("VmRSS", "0 kB").split()[0])
    return total_kb / 1024


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@contextlib.contextmanager
def _quiet_kafka_client() -> Iterator[None]:
    # Connection refusals are expected while a server boots; keep them out of the log.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        quiet.setLevel(level)


def _wait(check: object, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    try:
        with _quiet_kafka_client():
            _poll(check, deadline)
        return
    except Exception as exc:
        last = exc
    raise ServiceUnavailable(f"{what} did not answer within {timeout_s:.0f} s ({last})")


def _kafka_starting(exc: BaseException) -> bool:
    """Whether a Kafka client error is what a broker that is still starting gives."""
    if isinstance(exc, KafkaError):
        return exc.retriable or isinstance(exc, KafkaTimeoutError)
    return isinstance(exc, OSError)  # refused, unreachable, timed out (TimeoutError)


async def _retry_while_starting(
    attempt: Callable[[], Awaitable[_T]], what: str, timeout_s: float, pause_s: float = 1.0
) -> _T:
    """Run ``attempt`` until it succeeds, retrying while the broker is still starting.

    Other errors pass through at once; after ``timeout_s`` the last refusal becomes a
    :class:`ServiceUnavailable` that names what did not answer.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with _quiet_kafka_client():
                return await attempt()
        except (KafkaError, OSError) as exc:
            if not _kafka_starting(exc):
                raise
            if time.monotonic() + pause_s > deadline:
                reason = str(exc) or type(exc).__name__
                raise ServiceUnavailable(
                    f"{what} did not answer within {timeout_s:.0f} s ({reason})"
                ) from exc
            log.info("%s not answering yet (%s); retrying", what, type(exc).__name__)
            await asyncio.sleep(pause_s)


def _poll(check: object, deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as exc:
            last = exc
        time.sleep(0.5)
    raise TimeoutError(str(last))


def _stop_pid(pid: int | None, name: str, timeout_s: float = 60) -> None:
    if not _pid_alive(pid):
        return
    assert pid is not None
    log.info("stopping %s pid=%d", name, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pid_alive(pid):
        log.warning("%s pid=%d ignored SIGTERM; killing", name, pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _render(template: Path, **values: object) -> str:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _failed(exc: subprocess.CalledProcessError) -> str:
    """A failed command's own words, on one line."""
    out = exc.stderr or exc.stdout or b""
    text = out.decode(errors="replace") if isinstance(out, bytes) else out
    return " ".join(text.split()) or f"exit status {exc.returncode}"


# --- Mosquitto -------------------------------------------------------------------------


class Mosquitto:
    """The MQTT broker from Debian, with password file and ACL."""

    name = "mosquitto"

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.dir = (settings.services_dir / "mosquitto").resolve()
        self.pidfile = self.dir / "mosquitto.pid"
        self.conf = self.dir / "mosquitto.conf"

    def _configure(self) -> bool:
        """Render the configuration and the service identity; whether anything changed."""
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        conf = _render(
            DEPLOY / "mosquitto" / "mosquitto.conf",
            port=self.s.mqtt.port,
            host=self.s.mqtt.host,
            data_dir=self.dir / "data",
            passwd=mosquitto.passwd_path(self.s),
            acl=mosquitto.acl_path(self.s),
            pid=self.pidfile,
            log=self.dir / "mosquitto.log",
        )
        changed = not self.conf.exists() or self.conf.read_text() != conf
        if changed:
            self.conf.write_text(conf)
        return mosquitto.ensure_service_identity(self.s) or changed

    def _answers(self) -> bool:
        return mosquitto.ping(self.s)

    def up(self) -> str:
        """Start the broker unless it already runs; wait until it accepts a login."""
        if _pid_alive(_read_pid(self.pidfile)):
            # Running already; a busy machine may just be slow to answer. A reload drops
            # no client, but is only worth it for a changed password file or ACL.
            if self._configure():
                mosquitto.reload_broker(self.s)
                _wait(self._answers, "mosquitto", 20)
                return "already running (configuration reloaded)"
            _wait(self._answers, "mosquitto", 20)
            return "already running"
        ensure_packages("mosquitto")
        self._configure()
        if _port_open(self.s.mqtt.host, self.s.mqtt.port):
            raise ServiceUnavailable(
                f"port {self.s.mqtt.port} is taken by another process; "
                "set CITYFIX_MQTT__PORT to a free port"
            )
        subprocess.run(["mosquitto", "-d", "-c", str(self.conf)], check=True)
        _wait(self._answers, "mosquitto", 20)
        return "started"

    def down(self) -> None:
        """Stop the broker."""
        _stop_pid(_read_pid(self.pidfile), self.name)
        self.pidfile.unlink(missing_ok=True)

    def state(self) -> ServiceState:
        """Whether it runs and answers."""
        pid = _read_pid(self.pidfile)
        alive = _pid_alive(pid)
        running = alive and self._answers()
        return ServiceState(
            self.name, running, pid if alive else None,
            f"mqtt://{self.s.mqtt.host}:{self.s.mqtt.port}", _rss_mb(pid),
        )


# --- Kafka -----------------------------------------------------------------------------


class Kafka:
    """A single-node KRaft Kafka broker run with java from the Maven Central jars."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.dir = (settings.services_dir / "kafka").resolve()
        self.libs = self.dir / f"libs-{settings.kafka.version}"
        self.data = self.dir / "data"
        self.pidfile = self.dir / "kafka.pid"
        self.props = self.dir / "server.properties"

    def _fetch_jars(self) -> None:
        if self.libs.exists() and any(self.libs.glob("kafka_2.13-*.jar")):
            return
        ensure_packages("java", "maven")
        log.info("fetching Kafka %s jars from Maven Central", self.s.kafka.version)
        tmp = self.libs.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(
            [
                "mvn", "-q", "-B", "-f", str(DEPLOY / "kafka" / "pom.xml"),
                "dependency:copy-dependencies", "-DincludeScope=runtime",
                f"-Dkafka.version={self.s.kafka.version}", f"-DoutputDirectory={tmp}",
            ],
            check=True,
        )
        tmp.rename(self.libs)

    def _java(self, main: str, *args: str, heap_mb: int = 256) -> list[str]:
        return [
            "java", f"-Xms{heap_mb}m", f"-Xmx{heap_mb}m",
            f"-Dlog4j.configuration=file:{DEPLOY / 'kafka' / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}",
            "-cp", f"{self.libs}/*", main, *args,
        ]

    def _configure(self) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.props.write_text(
            _render(
                DEPLOY / "kafka" / "server.properties",
                host=self.s.kafka.host,
                port=self.s.kafka.port,
                controller_port=self.s.kafka.controller_port,
                data_dir=self.data,
                partitions=self.s.kafka.default_partitions,
            )
        )
        if not (self.data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            log.info("formatting Kafka storage cluster_id=%s", cluster_id)
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", "-t", cluster_id,
                    "-c", str(self.props), "--ignore-formatted",
                ),
                check=True,
                capture_output=True,
            )

    def _answers(self) -> bool:
        return asyncio.run(self._list_topics()) is not None

    async def _list_topics(self) -> set[str] | None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.s.kafka.bootstrap, request_timeout_ms=3000
        )
        try:
            await admin.start()
            return set(await admin.list_topics())
        finally:
            await admin.close()

    async def create_topics(self, timeout_s: float = 60.0) -> list[str]:
        """Create the topics of ``core.topics`` that do not exist yet.

        A broker that is still starting (a container started alongside) is retried for up
        to ``timeout_s``, then :class:`ServiceUnavailable`: a client producing before the
        topics exist would have the broker auto-create them, without compaction.
        """
        return await _retry_while_starting(
            self._create_missing_topics, f"kafka at {self.s.kafka.bootstrap}", timeout_s
        )

    async def _create_missing_topics(self) -> list[str]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.s.kafka.bootstrap, request_timeout_ms=10_000
        )
        created: list[str] = []
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            for t in KAFKA_TOPICS:
                if t.name in existing:
                    continue
                try:
                    await admin.create_topics(
                        [NewTopic(t.name, t.partitions, 1, topic_configs=t.config())]
                    )
                    created.append(t.name)
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()
        return created

    def up(self) -> str:
        """Start the broker unless it already runs; create the topics."""
        if _pid_alive(_read_pid(self.pidfile)):
            _wait(self._answers, "kafka", 60)
            asyncio.run(self.create_topics())
            return "already running"
        self._fetch_jars()
        self._configure()
        if _port_open(self.s.kafka.host, self.s.kafka.port):
            raise ServiceUnavailable(
                f"port {self.s.kafka.port} is taken by another process; "
                "set CITYFIX_KAFKA__PORT to a free port"
            )
        logfile = (self.dir / "logs" / "stdout.log").open("ab")
        proc = subprocess.Popen(
            [
                *self._java("kafka.Kafka", str(self.props), heap_mb=self.s.kafka.heap_mb),
                # G1 with a small pause target suits a broker sharing two cores.
            ],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "KAFKA_HEAP_OPTS": f"-Xmx{self.s.kafka.heap_mb}m"},
        )
        self.pidfile.write_text(str(proc.pid))
        _wait(lambda: proc.poll() is None and self._answers(), "kafka", 90)
        created = asyncio.run(self.create_topics())
        log.info("kafka topics created: %s", ", ".join(created) or "none (all existed)")
        return "started"

    def down(self) -> None:
        """Stop the broker (a controlled shutdown)."""
        _stop_pid(_read_pid(self.pidfile), self.name, timeout_s=60)
        self.pidfile.unlink(missing_ok=True)

    def state(self) -> ServiceState:
        """Whether it runs and answers."""
        pid = _read_pid(self.pidfile)
        alive = _pid_alive(pid)
        running = False
        if alive:
            with contextlib.suppress(Exception):
                running = self._answers()
        return ServiceState(
            self.name, running, pid if alive else None,
            f"kafka://{self.s.kafka.bootstrap}", _rss_mb(pid),
        )


# --- PostgreSQL ------------------------------------------------------------------------

_PG_CONF_MARK = "\n# --- cityfix ---\n"


def with_cityfix_block(conf: str, block: str) -> str:
    """``postgresql.conf`` text with cityfix's block (all after its marker) set to ``block``.

    What ``initdb`` wrote stays as it was; later lines win in postgresql.conf, so the block
    at the end decides port, addresses and preloads.
    """
    return conf.split(_PG_CONF_MARK, 1)[0] + _PG_CONF_MARK + block


class Postgres:
    """A PostgreSQL cluster of its own, run as the ``postgres`` user."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.dir = (settings.services_dir / "postgres").resolve()
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "run"
        self.logfile = self.dir / "postgres.log"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        # PostgreSQL refuses to run as root: drop to the postgres user.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _bin(self, name: str) -> str:
        bindir = _pg_bindir()
        if bindir is None:
            raise ServiceUnavailable("PostgreSQL binaries not found under /usr/lib/postgresql")
        return str(bindir / name)

    def timescaledb_available(self) -> bool:
        """Whether the timescaledb extension is installed for this server version."""
        bindir = _pg_bindir()
        if bindir is None:
            return False
        share = Path("/usr/share/postgresql") / bindir.parent.name / "extension"
        return (share / "timescaledb.control").exists()

    def _init(self) -> None:
        for d in (self.dir, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            self._chown(d)
        if (self.data / "PG_VERSION").exists():
            return
        log.info("initialising PostgreSQL cluster in %s", self.data)
        try:
            subprocess.run(
                self._as_owner([
                    self._bin("initdb"), "-D", str(self.data), "-U", "postgres",
                    "--encoding=UTF8", "--locale=C.UTF-8",
                    "--auth-local=trust", "--auth-host=scram-sha-256",
                ]),
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as exc:
            raise ServiceUnavailable(f"initdb failed in {self.data}: {_failed(exc)}") from exc

    def _configure(self) -> None:
        """Rewrite the cityfix block of postgresql.conf from the settings, on every start.

        Written once at ``initdb`` only, a later ``CITYFIX_PG__PORT`` (or host) would never
        reach the server.
        """
        block = _render(
            DEPLOY / "postgres" / "postgresql.conf",
            host=self.s.pg.host, port=self.s.pg.port, socket_dir=self.socket_dir,
        )
        if self.timescaledb_available():
            block += "shared_preload_libraries = 'timescaledb'\ntimescaledb.telemetry_level = off\n"
        path = self.data / "postgresql.conf"
        current = path.read_text()
        wanted = with_cityfix_block(current, block)
        if wanted != current:
            # In place, so the file keeps its owner (the postgres user).
            path.write_text(wanted)

    def _running_port(self) -> int | None:
        # postmaster.pid: pid, data directory, start time, port, ...
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[3])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def _superuser_sql(self, sql: str, db: str = "postgres") -> str:
        try:
            out = subprocess.run(
                self._as_owner([
                    self._bin("psql"), "-h", str(self.socket_dir), "-p", str(self.s.pg.port),
                    "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-tAc", sql,
                ]),
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise ServiceUnavailable(f"postgres: psql failed: {_failed(exc)}") from exc
        return out.stdout.strip()

    def _bootstrap(self) -> None:
        user, db = self.s.pg.user, self.s.pg.database
        pw = self.s.pg.password.get_secret_value().replace("'", "''")
        # user and db are validated identifiers (PostgresSettings patterns).
        if not self._superuser_sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'"):  # noqa: S608
            self._superuser_sql(f'CREATE ROLE "{user}" LOGIN CREATEDB PASSWORD \'{pw}\'')
        else:
            self._superuser_sql(f'ALTER ROLE "{user}" LOGIN CREATEDB PASSWORD \'{pw}\'')
        if not self._superuser_sql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'"):  # noqa: S608
            self._superuser_sql(f'CREATE DATABASE "{db}" OWNER "{user}"')
        if self.timescaledb_available():
            # Installed into template1 too, so databases made by tests have it.
            for target in (db, "template1"):
                self._superuser_sql("CREATE EXTENSION IF NOT EXISTS timescaledb", db=target)
            log.info("postgres: timescaledb extension enabled")
        else:
            log.warning(
                "postgres: timescaledb extension is NOT installed; cityfix runs in "
                "plain-PostgreSQL mode (ordinary tables and materialised views)"
            )

    def _answers(self) -> bool:
        with psycopg.connect(self.s.pg.dsn, connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def _pid(self) -> int | None:
        return _read_pid(self.data / "postmaster.pid")

    def up(self) -> str:
        """Start the cluster unless it runs; make the role and database."""
        if _pid_alive(self._pid()):
            running_port = self._running_port()
            if running_port not in (None, self.s.pg.port):
                raise ServiceUnavailable(
                    f"postgres runs on port {running_port}, but CITYFIX_PG__PORT is "
                    f"{self.s.pg.port}; restart it (`cityfix services down --only postgres`, "
                    "then `up`) or set the port back"
                )
            self._bootstrap()
            _wait(self._answers, "postgres", 30)
            return "already running"
        ensure_packages("postgres")
        self._init()
        self._configure()
        if _port_open(self.s.pg.host, self.s.pg.port):
            raise ServiceUnavailable(
                f"port {self.s.pg.port} is taken by another process; "
                "set CITYFIX_PG__PORT to a free port"
            )
        self.logfile.touch()
        self._chown(self.logfile)
        try:
            subprocess.run(
                self._as_owner([
                    self._bin("pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
                    "-w", "-t", "60", "start",
                ]),
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as exc:
            raise ServiceUnavailable(
                f"postgres did not start on port {self.s.pg.port}: {_failed(exc)}; "
                f"last lines of {self.logfile}: {_tail(self.logfile)}"
            ) from exc
        self._bootstrap()
        _wait(self._answers, "postgres", 30)
        return "started"

    def down(self) -> None:
        """Stop the cluster (fast shutdown)."""
        if not _pid_alive(self._pid()):
            return
        log.info("stopping postgres")
        subprocess.run(
            self._as_owner([self._bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )
        _stop_pid(self._pid(), self.name)

    def state(self) -> ServiceState:
        """Whether it runs and answers."""
        pid = self._pid()
        alive = _pid_alive(pid)
        running = False
        if alive:
            with contextlib.suppress(Exception):
                running = self._answers()
        mode = "timescaledb" if self.timescaledb_available() else "plain PostgreSQL"
        return ServiceState(
            self.name, running, pid if alive else None,
            f"postgresql://{self.s.pg.host}:{self.s.pg.port}/{self.s.pg.database}",
            _rss_mb(pid), mode,
        )


def all_services(settings: Settings) -> list[Mosquitto | Kafka | Postgres]:
    """The three servers in start order."""
    return [Postgres(settings), Mosquitto(settings), Kafka(settings)]


def up(settings: Settings, only: list[str] | None = None) -> dict[str, str]:
    """Start what is missing; return what happened per service."""
    settings.services_dir.mkdir(parents=True, exist_ok=True)
    return {
        svc.name: svc.up()
        for svc in all_services(settings)
        if not only or svc.name in only
    }


def down(settings: Settings, only: list[str] | None = None) -> None:
    """Stop every running service (reverse start order)."""
    for svc in reversed(all_services(settings)):
        if not only or svc.name in only:
            svc.down()


def status(settings: Settings) -> list[ServiceState]:
    """The state of each service."""
    return [svc.state() for svc in all_services(settings)]
