"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Service
from api.models import Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", responses={200: {"description": "The process is alive."}})
async def healthz() -> dict[str, str]:
    """The process answers (no backing server is checked)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {"model": Readiness, "description": "A backing server does not answer; says which."}
    },
)
async def readyz(service: Service, response: Response) -> Readiness:
    """Whether the database, Kafka and MQTT answer."""
    checks = await service.readiness()
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        response.status_code = 503
    return Readiness(ready=ready, checks=checks)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format.",
        }
    },
)
async def metrics(service: Service) -> Response:
    """Prometheus metrics of this process."""
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
