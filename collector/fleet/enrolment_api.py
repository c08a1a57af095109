"""HTTP endpoint where an agent trades its one-time token and CSR for a fleet certificate."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from collector.fleet.enrolment import EnrolmentError, redeem
from collector.fleet.pki import FleetCA


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=20, max_length=200)
    csr_pem: str = Field(min_length=100, max_length=8000)


class BrokerInfo(BaseModel):
    host: str
    port: int


class EnrolResponse(BaseModel):
    agent_id: str
    line_id: str
    site_id: str
    certificate_pem: str
    ca_pem: str
    broker: BrokerInfo


def make_router(engine: Engine, ca: FleetCA, broker_host: str, broker_port: int) -> APIRouter:
    router = APIRouter(tags=["enrolment"])

    @router.post("/api/v1/enrol", response_model=EnrolResponse,
                 responses={403: {"description": "token unknown, expired or used; or CSR refused"}})
    def enrol(request: EnrolRequest) -> EnrolResponse:
        """Unauthenticated by design: the one-time token is the credential."""
        try:
            done = redeem(engine, ca, request.token, request.csr_pem.encode())
        except EnrolmentError as exc:
            raise HTTPException(status_code=403, detail=str(exc)) from None
        return EnrolResponse(agent_id=done.agent_id, line_id=done.line_id, site_id=done.site_id,
                             certificate_pem=done.certificate_pem.decode(), ca_pem=done.ca_pem.decode(),
                             broker=BrokerInfo(host=broker_host, port=broker_port))

    return router
