"""A real launcher process exports its fire span by OTLP/HTTP to a receiver started by the test
(decoded with the OTLP protobuf definitions), continuing the Job's TRACEPARENT; the run's stored
traceparent is that span's."""

from __future__ import annotations

import queue
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from wfclock.db.store import list_runs

from ..conftest import make_state
from .test_launcher_job import run_launcher

JOB_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
JOB_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def receiver():
    """An OTLP/HTTP trace receiver on a free port: each request's decoded body lands in a queue."""
    received: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.put((self.path, self.headers["Content-Type"], request))
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def attributes_of(span) -> dict:
    return {a.key: a.value.string_value for a in span.attributes}


def test_a_launcher_process_exports_its_fire_span_to_an_otlp_receiver(
    python_env, engine, add_schedule, receiver
):
    endpoint, received = receiver
    state = add_schedule(make_state(cron="0 * * * *", timezone="UTC", registered_name="wfs-x"))
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    env = {
        "WFCLOCK_SCHEDULE_ID": str(state.schedule_id),
        "WFCLOCK_JOB_NAME": f"wfs-x-{int(at.timestamp()) // 60}",
        "WFCLOCK_CRON": "0 * * * *",
        "WFCLOCK_TIMEZONE": "UTC",
        "TRACEPARENT": f"00-{JOB_TRACE}-{JOB_SPAN}-01",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "wfclock-launcher-test",
    }
    code, line, stderr = run_launcher(python_env, **env)
    assert code == 0 and line["outcome"] == "launched", stderr
    # The launcher exports before it exits: the span is there already.
    path, content_type, request = received.get(timeout=5)
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "wfclock-launcher-test"
    [span] = [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert span.name == "wfclock.fire"
    assert span.trace_id.hex() == JOB_TRACE and span.parent_span_id.hex() == JOB_SPAN
    attributes = attributes_of(span)
    assert attributes["wfclock.fire_key"] == line["fireKey"]
    assert attributes["wfclock.schedule_id"] == str(state.schedule_id)
    assert attributes["wfclock.scheduled_for"] == f"{at:%Y-%m-%dT%H:%M:%SZ}"
    assert attributes["wfclock.outcome"] == "launched"
    assert attributes["wfclock.run_id"] == line["runId"]
    [run] = list_runs(engine)
    _, trace_id, span_id, _ = run["trigger_metadata"]["traceparent"].split("-")
    assert (trace_id, span_id) == (JOB_TRACE, span.span_id.hex())
    assert received.empty()


def test_an_unreachable_collector_costs_the_fire_nothing(python_env, add_schedule):
    state = add_schedule(make_state(cron="0 * * * *", timezone="UTC", registered_name="wfs-x"))
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    env = {
        "WFCLOCK_SCHEDULE_ID": str(state.schedule_id),
        "WFCLOCK_JOB_NAME": f"wfs-x-{int(at.timestamp()) // 60}",
        # a closed port: the export fails at once and is reported on stderr
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
    }
    code, line, _ = run_launcher(python_env, **env)
    assert code == 0 and line["outcome"] == "launched"
