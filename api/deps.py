"""FastAPI dependencies: the service shell and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from api.auth import InvalidToken, Role, read_token
from api.service import ApiService
from core.errors import PermissionDenied
from store import queries

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)


def get_service(request: Request) -> ApiService:
    """The app's service shell."""
    service: ApiService = request.app.state.service
    return service


Service = Annotated[ApiService, Depends(get_service)]


# Token times are whole seconds; a user row's creation time is not.
_IAT_RESOLUTION = timedelta(seconds=1)


@dataclass(frozen=True)
class Caller:
    """An authenticated dispatcher-API user."""

    username: str
    role: Role


async def authenticate(service: ApiService, token: str | None) -> Caller:
    """The user behind a bearer token, as stored now (removed or disabled users fail).

    The user row is remembered for ``settings.api.user_cache_s`` so a busy map client
    does not cost a query per request; changes made through the API apply at once, a
    removal by the CLI within that time.
    """
    if not token:
        raise InvalidToken("missing bearer token")
    claims = read_token(token, secret=service.settings.api.secret_key.get_secret_value())
    user = await service.user(claims.username, lambda: service.db(queries.user_by_name,
                                                                 claims.username))
    if user is None or user["disabled"]:
        raise InvalidToken("unknown or disabled user")
    if user["created_at"] > claims.issued_at + _IAT_RESOLUTION:
        # A token of an earlier user of the same name (removed, then the name re-used).
        raise InvalidToken("token issued before this user was created")
    return Caller(user["username"], Role(user["role"]))


def require(role: Role):  # type: ignore[no-untyped-def]
    """A dependency admitting callers whose role includes ``role``."""

    async def _dep(service: Service, token: Annotated[str | None, Depends(oauth2)]) -> Caller:
        caller = await authenticate(service, token)
        if not caller.role.allows(role):
            raise PermissionDenied(f"role {caller.role} may not do this; needs {role}")
        return caller

    return _dep


Viewer = Annotated[Caller, Depends(require(Role.VIEWER))]
Dispatcher = Annotated[Caller, Depends(require(Role.DISPATCHER))]
Admin = Annotated[Caller, Depends(require(Role.ADMIN))]
