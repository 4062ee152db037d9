"""OpenTelemetry traces of schedules, fires and runs; off unless configured.

Configured by the standard variables: `OTEL_TRACES_EXPORTER=otlp` or an
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` turns tracing on (exported as
OTLP over HTTP/protobuf, the SDK reading the endpoint, headers, timeout and `OTEL_SERVICE_NAME`
itself); `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` keeps it off. Off, nothing of
OpenTelemetry is imported (the launcher's cold start is on every fire's path) and `span` hands
out a stand-in that records nothing.

Span ids of a fire: a span whose parent is not given and not current starts a trace whose id
derives from the fire key (`trace_key`), the same id the run's traceparent has with tracing off,
so every delivery of one fire (its Job, a retry, the operator) lands in one trace.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping

log = logging.getLogger("wfclock.tracing")

_provider = None  # the SDK's TracerProvider once `setup` turned tracing on
_trace_key: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_key", default=None)


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the standard OTEL_* variables ask for traces (see the module's doc)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return bool(exporter) or bool(endpoint)


def setup(
    service_name: str, env: Mapping[str, str] | None = None, *, exporter=None, batch: bool = True
) -> bool:
    """Turns tracing on when the environment asks for it (or `exporter` is given: tests pass
    the SDK's in-memory exporter); returns whether it is on. `batch=False` exports each span as
    it ends (a short-lived process: the launcher). An exporter other than `otlp` is refused with
    a warning and tracing stays off: a fire never fails for its traces."""
    global _provider
    env = os.environ if env is None else env
    if exporter is None and not wanted(env):
        return False
    chosen = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter is None and chosen != "otlp":
        _warn(
            f"OTEL_TRACES_EXPORTER={chosen!r} is not supported (accepted: otlp, none); "
            "tracing stays off"
        )
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class FireKeyIds(RandomIdGenerator):
        """A new trace's id from the fire key in hand (`_trace_key`), else random."""

        def generate_trace_id(self) -> int:
            key = _trace_key.get()
            if key is None:
                return super().generate_trace_id()
            return int(hashlib.sha256(key.encode()).hexdigest()[:32], 16)

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource, id_generator=FireKeyIds())
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    if _provider is not None:
        _provider.shutdown()
    _provider = provider
    return True


def shutdown() -> None:
    """Exports what is left and turns tracing off."""
    global _provider
    if _provider is not None:
        provider, _provider = _provider, None
        provider.shutdown()


def enabled() -> bool:
    return _provider is not None


class Span:
    """What the code sees of a span: attributes to set and the W3C traceparent of the span (None
    with tracing off, so the caller keeps its own)."""

    traceparent: str | None = None

    def set(self, **attributes) -> None:
        pass

    def fail(self, exc: BaseException) -> None:
        pass


class _RecordingSpan(Span):
    def __init__(self, span):
        self._span = span
        context = span.get_span_context()
        self.traceparent = (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
        )

    def set(self, **attributes) -> None:
        for name, value in attributes.items():
            if value is not None:
                self._span.set_attribute(f"wfclock.{name}", _plain(value))

    def fail(self, exc: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.record_exception(exc)
        self._span.set_status(
            Status(StatusCode.ERROR, str(exc).strip()[:200] or type(exc).__name__)
        )


@contextlib.contextmanager
def span(
    name: str, /, *, parent: str | None = None, trace_key: str | None = None, **attributes
) -> Iterator[Span]:
    """A span around the block, made current so spans inside it are its children. Its parent:
    the current span when there is one (the operator's span around a fire it launches), else the
    W3C `parent` when that is valid (the Job's TRACEPARENT, the schedule's annotation), else
    none: a new trace, whose id derives from `trace_key` when given. Attributes are set as
    `wfclock.<name>`."""
    if _provider is None:
        yield Span()
        return
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = None  # the current span's
    if not trace.get_current_span().get_span_context().is_valid:
        context = TraceContextTextMapPropagator().extract({"traceparent": parent or ""})
        if not trace.get_current_span(context).get_span_context().is_valid:
            context = otel_context.Context()  # a root span
    token = _trace_key.set(trace_key)
    try:
        tracer = _provider.get_tracer("wfclock")
        with tracer.start_as_current_span(
            name, context=context, record_exception=False, set_status_on_exception=False
        ) as otel_span:
            _trace_key.reset(token)
            token = None
            handle = _RecordingSpan(otel_span)
            handle.set(**attributes)
            try:
                yield handle
            except BaseException as exc:
                handle.fail(exc)
                raise
    finally:
        if token is not None:
            _trace_key.reset(token)


def _plain(value):
    return value if isinstance(value, str | bool | int | float) else str(value)


def _warn(message: str) -> None:
    log.warning(message)
    if not logging.getLogger().handlers:
        print(f"wfclock: {message}", file=sys.stderr)
