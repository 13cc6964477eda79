"""MQTT identities: Mosquitto's password file and per-identity ACL rights.

The registry of identities (``.services/mosquitto/identities.json``) is the source of truth;
the password file is kept with ``mosquitto_passwd`` and the ACL file is rendered from the
registry on every change, then the broker is told to reload (SIGHUP) without a restart. Only
a broker started by ``cityfix services up`` can be told (its pid file is under
``.services/``); any other broker, e.g. in a container, re-reads the files on its own SIGHUP.

Rights per kind (``{id}`` is the identity's own id, which is also its username):

- ``sensor``: write ``cityfix/v1/sensors/{id}/#``
- ``app``: write ``cityfix/v1/reports/{id}``; read ``cityfix/v1/requests/+/status``
- ``crew``: write ``cityfix/v1/crews/{id}/position`` and ``.../status``; read ``.../assignment``
- ``service``: read and write ``cityfix/#`` (bridge, streams, dispatcher, api)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import paho.mqtt.client as mqtt

from core.errors import Conflict, InvalidMessage, NotFound
from core.mqtt import service_client
from core.settings import Settings
from core.topics import MQTT_PREFIX, valid_id

_DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"


class IdentityKind(StrEnum):
    """What an MQTT identity is allowed to be."""

    SENSOR = "sensor"
    APP = "app"
    CREW = "crew"
    SERVICE = "service"


@dataclass(frozen=True)
class Identity:
    """One MQTT credential (the password itself lives only in the hashed password file)."""

    id: str
    kind: IdentityKind
    created_at: str


def _dir(settings: Settings) -> Path:
    d = (settings.services_dir / "mosquitto").resolve()
    d.mkdir(parents=True, exist_ok=True)
    return d


def passwd_path(settings: Settings) -> Path:
    """The broker's password file."""
    return _dir(settings) / "passwd"


def acl_path(settings: Settings) -> Path:
    """The broker's ACL file."""
    return _dir(settings) / "acl"


def _registry_path(settings: Settings) -> Path:
    return _dir(settings) / "identities.json"


def rights(kind: IdentityKind, ident: str) -> list[str]:
    """The ACL lines for one identity."""
    p = MQTT_PREFIX
    if kind is IdentityKind.SENSOR:
        return [f"topic write {p}/sensors/{ident}/#"]
    if kind is IdentityKind.APP:
        return [f"topic write {p}/reports/{ident}", f"topic read {p}/requests/+/status"]
    if kind is IdentityKind.CREW:
        return [
            f"topic write {p}/crews/{ident}/position",
            f"topic write {p}/crews/{ident}/status",
            f"topic read {p}/crews/{ident}/assignment",
        ]
    return [f"topic readwrite {p.split('/')[0]}/#"]


def list_identities(settings: Settings) -> list[Identity]:
    """Every registered identity, sorted by id."""
    try:
        raw = json.loads(_registry_path(settings).read_text())
    except FileNotFoundError:
        return []
    return sorted(
        (Identity(r["id"], IdentityKind(r["kind"]), r["created_at"]) for r in raw),
        key=lambda i: i.id,
    )


def _save(settings: Settings, identities: list[Identity]) -> None:
    path = _registry_path(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{**asdict(i), "kind": str(i.kind)} for i in identities], indent=1))
    tmp.replace(path)


def render_acl(settings: Settings) -> bool:
    """Write the ACL file from the base rights and the registry; whether it changed."""
    base = (
        (_DEPLOY / "acl.base").read_text().replace("{service_user}", settings.mqtt.service_username)
    )
    blocks = [base.rstrip() + "\n"]
    for ident in list_identities(settings):
        if ident.id == settings.mqtt.service_username:
            continue
        blocks.append(f"user {ident.id}\n" + "\n".join(rights(ident.kind, ident.id)) + "\n")
    text = "\n".join(blocks)
    with contextlib.suppress(FileNotFoundError):
        if acl_path(settings).read_text() == text:
            return False
    tmp = acl_path(settings).with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(acl_path(settings))
    return True


def _set_password(settings: Settings, username: str, password: str) -> None:
    path = passwd_path(settings)
    args = ["mosquitto_passwd", "-b", str(path), username, password]
    if not path.exists():
        path.touch(mode=0o600)
    subprocess.run(args, check=True, capture_output=True)


def _password_matches(settings: Settings, username: str, password: str) -> bool:
    """Whether the password file already holds ``password`` for ``username``.

    ``mosquitto_passwd`` salts afresh on every call, so re-setting an unchanged password
    would still change the file; the hash is checked here instead (``$6$``: SHA-512 of
    password and salt, ``$7$``: PBKDF2-HMAC-SHA-512, the Mosquitto 2 default).
    """
    try:
        lines = passwd_path(settings).read_text().splitlines()
    except FileNotFoundError:
        return False
    secret = password.encode()
    for line in lines:
        user, _, stored = line.partition(":")
        if user != username:
            continue
        parts = stored.split("$")
        try:
            if len(parts) == 4 and parts[1] == "6":
                salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
                return hmac.compare_digest(hashlib.sha512(secret + salt).digest(), digest)
            if len(parts) == 5 and parts[1] == "7":
                salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
                derived = hashlib.pbkdf2_hmac("sha512", secret, salt, int(parts[2]), len(digest))
                return hmac.compare_digest(derived, digest)
        except ValueError:
            return False
        return False
    return False


def _delete_password(settings: Settings, username: str) -> None:
    if passwd_path(settings).exists():
        subprocess.run(
            ["mosquitto_passwd", "-D", str(passwd_path(settings)), username],
            check=True,
            capture_output=True,
        )


def broker_pid_path(settings: Settings) -> Path:
    """The pid file of the broker that ``cityfix services up`` runs."""
    return _dir(settings) / "mosquitto.pid"


def reload_broker(settings: Settings) -> bool:
    """Ask the local broker to re-read password file and ACL (SIGHUP).

    False when there is no local broker to signal (no pid file, a stale pid, another
    user's process): a broker elsewhere, e.g. in a container, needs its own SIGHUP.
    """
    try:
        pid = int(broker_pid_path(settings).read_text().split()[0])
        os.kill(pid, signal.SIGHUP)
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError, PermissionError):
        return False
    return True


def ensure_service_identity(settings: Settings) -> bool:
    """Register cityfix's own service identity with the password from settings.

    Returns whether the password file, registry or ACL changed, i.e. whether a running
    broker needs a reload; an unchanged set-up is left as it is.
    """
    ident = settings.mqtt.service_username
    changed = False
    password = settings.mqtt.service_password.get_secret_value()
    if not _password_matches(settings, ident, password):
        _set_password(settings, ident, password)
        changed = True
    identities = list_identities(settings)
    if not any(i.id == ident and i.kind is IdentityKind.SERVICE for i in identities):
        known = [i for i in identities if i.id != ident]
        _save(settings, [*known, Identity(ident, IdentityKind.SERVICE, _now())])
        changed = True
    return render_acl(settings) or changed


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def add_identity(
    settings: Settings,
    kind: IdentityKind,
    ident: str,
    password: str | None = None,
    *,
    reload: bool = True,
) -> str:
    """Create (or re-key) an identity; return its password (generated when not given).

    With ``reload`` the local broker is told at once (see :func:`reload_broker`).
    """
    if not valid_id(ident):
        raise InvalidMessage("ids are 1-64 of A-Z a-z 0-9 _ . : - (starting alphanumeric)", "id")
    existing = {i.id: i for i in list_identities(settings)}
    if ident in existing and existing[ident].kind is not kind:
        raise Conflict(f"{ident} already exists as a {existing[ident].kind}")
    password = password or secrets.token_urlsafe(18)
    _set_password(settings, ident, password)
    created = existing[ident].created_at if ident in existing else _now()
    existing[ident] = Identity(ident, kind, created)
    _save(settings, list(existing.values()))
    render_acl(settings)
    if reload:
        reload_broker(settings)
    return password


def revoke_identity(settings: Settings, ident: str, *, reload: bool = True) -> None:
    """Remove an identity's credential and rights; with ``reload`` the local broker is told."""
    existing = {i.id: i for i in list_identities(settings)}
    if ident not in existing:
        raise NotFound(f"no identity {ident!r}")
    _delete_password(settings, ident)
    del existing[ident]
    _save(settings, list(existing.values()))
    render_acl(settings)
    if reload:
        reload_broker(settings)


def ping(settings: Settings, timeout_s: float = 3.0) -> bool:
    """Whether the broker accepts the service identity's login."""
    done = threading.Event()
    ok: list[bool] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        ok.append(not getattr(rc, "is_failure", False))
        done.set()

    client = service_client(settings.mqtt, f"cityfix-ping-{secrets.token_hex(4)}")
    client.on_connect = on_connect
    try:
        client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    try:
        done.wait(timeout_s)
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()
    return bool(ok and ok[0])
