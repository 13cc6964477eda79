"""The one error tree of cityfix.

::

    CityfixError
    ├── ConfigError                 settings that cannot work (bad secret, bad path)
    ├── InvalidMessage              input that fails its wire schema (names the field)
    │   ├── PayloadTooLarge         over the size limit of its topic
    │   └── IdentityMismatch        payload id disagrees with the topic / credential
    ├── GeoError                    road-graph problems
    │   ├── OutOfServiceArea        a point outside the city's service area
    │   └── NoRoute                 no path between two snapped points
    ├── NotFound                    an id that does not exist (request, incident, crew)
    ├── Conflict                    an action that contradicts current state
    ├── PermissionDenied            an authenticated caller without the right
    ├── RateLimited                 too many requests for a key or address
    ├── SolverError                 the dispatcher model found no usable plan
    └── ServiceUnavailable          a backing server (Kafka, MQTT, PostgreSQL) is down

Only the API maps these to HTTP; only the bridge and agents map them to dead-letter records.
"""

from __future__ import annotations


class CityfixError(Exception):
    """Base of every error raised on purpose by cityfix."""


class ConfigError(CityfixError):
    """Settings that cannot work."""


class InvalidMessage(CityfixError):
    """Input that fails its wire schema.

    ``field`` names the offending field (dotted path) so dead-letter records and HTTP
    errors can say exactly what was wrong.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class PayloadTooLarge(InvalidMessage):
    """A payload over its topic's size limit."""


class IdentityMismatch(InvalidMessage):
    """A payload whose id disagrees with the topic it arrived on."""


class GeoError(CityfixError):
    """Road-graph problems."""


class OutOfServiceArea(GeoError):
    """A point outside the city's service area."""


class NoRoute(GeoError):
    """No path between two points on the road graph."""


class NotFound(CityfixError):
    """An id that does not exist."""


class Conflict(CityfixError):
    """An action that contradicts the current state."""


class PermissionDenied(CityfixError):
    """An authenticated caller without the right to do this."""


class RateLimited(CityfixError):
    """Too many requests for one key or address; ``retry_after_s`` says when to come back."""

    def __init__(self, message: str, retry_after_s: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SolverError(CityfixError):
    """The dispatch model found no usable plan."""


class ServiceUnavailable(CityfixError):
    """A backing server is down or not answering."""
