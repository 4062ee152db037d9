"""Watch events kopf would do nothing with, answered before kopf's processing of them.

Every event kopf processes costs a whole cycle of its machinery (the object's memory, three
loggers, a deep copy and a diff of its essence, the handler look-ups), whether or not a handler
then runs. In a mass registration that cycle ran three times a schedule, and did something
once: for the schedule's create. The other two are known in advance to need nothing:

- **The echo of kopf's own status patch.** kopf patches a WorkflowSchedule's status when its
  handlers are done, and the watch then delivers the patched object. kopf would find its
  essence unchanged and nothing in progress, and do nothing.
- **A child's event that no handler's filter wants**: a CronJob's creation or a status update of
  the CronJob controller (`cronjob_changed` wants a spec change), a Job that has not finished
  (`fire_finished` wants a finished one).

A `Sieve` per watch stream decides by kopf's own rules and settings, and where it cannot be
sure it hands the event on:

- a resource with spawning or indexing handlers (daemons, timers, indices): every event;
- a resource with on-event handlers only: the events that none of their filters accepts (labels,
  annotations and `when`, called as kopf calls it; a field filter, or a filter that fails, counts
  as accepting);
- a resource with changing handlers: only the echo of kopf's own patch, recognised by the
  `resourceVersion` kopf's processing of the previous event of the object returned, and only
  when kopf would find nothing to do: the object is not being deleted, its finalizer is as the
  handlers require, no handler is in progress, its essence is the one kopf stored, and no
  on-event handler's filter accepts it.

kopf's worker still sees every event (its wait for the patched version ends at the echo, as
before); the sieve sits where that worker calls kopf's processing (`backpressure._watcher`).
The filters are called here with the operator's memo, and again by kopf for the events handed
on: they must be pure, and read only what the operator's memo shares with each object's (as
`handlers.py`'s do). A version awaited by an object whose echo never comes (a patch that
changed nothing) is kept until the object's next event: one short entry an object at most.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kopf._cogs.structs import dicts, diffs
from kopf._core.intents import registries

log = logging.getLogger("wfclock.idle_events")

_kopf_settings: kopf.OperatorSettings | None = None
_memo: Any = None


def configure(settings: kopf.OperatorSettings | None, memo: Any) -> None:
    """kopf's settings and the operator's memo, as kopf hands them to handlers and filters
    (None: nothing is sieved)."""
    global _kopf_settings, _memo
    _kopf_settings, _memo = settings, memo


def sieve_for(resource: Any) -> Sieve | None:
    """The sieve of one resource's watch stream, or None: every event goes to kopf (before
    `configure`, and for a resource without wfclock's handlers, such as kopf's peering)."""
    if _kopf_settings is None:
        return None
    sieve = Sieve(resource, kopf.get_default_registry(), _kopf_settings, _memo)
    return sieve if sieve.sieving else None


class Sieve:
    """What kopf's processing of one resource's events would do nothing with."""

    def __init__(self, resource: Any, registry, settings: kopf.OperatorSettings, memo: Any):
        def handlers(kind):
            return [h for h in kind.get_all_handlers() if registries._matches_resource(h, resource)]

        self.resource, self.settings, self.memo = resource, settings, memo
        self.watching = handlers(registry._watching)
        self.changing = handlers(registry._changing)
        self.extra_fields = (
            registry._watching.get_extra_fields(resource=resource)
            | registry._changing.get_extra_fields(resource=resource)
            | registry._spawning.get_extra_fields(resource=resource)
        )
        others = handlers(registry._spawning) + handlers(registry._indexing)
        self.sieving = bool(self.watching or self.changing) and not others
        if self.changing:
            self.sieving = self.sieving and self._echoes_are_judged()
        # The resourceVersion kopf's last processing of each object patched it to, by uid.
        self.patched: dict[str, str] = {}

    def _echoes_are_judged(self) -> bool:
        """Whether kopf's rules for this resource's echoes are the ones `idle` applies: progress
        kept in the status (its field is known), and a finalizer wanted by unfiltered handlers
        (kopf asks the handlers' filters of every event whether the finalizer is still needed)."""
        storage = self.settings.persistence.progress_storage
        if not isinstance(storage, kopf.StatusProgressStorage):
            return False
        return not any(
            h.requires_finalizer and (h.labels or h.annotations or h.when or h.field)
            for h in self.changing
        )

    def idle(self, raw_event: dict) -> bool:
        """Whether kopf's processing of this event would do nothing. Also forgets the version
        the object's last patch awaited: an event in between means the next is no echo. An
        event the sieve fails on goes to kopf, which reports what is wrong with it."""
        try:
            return self._idle(raw_event)
        except Exception:
            log.warning("an event could not be sieved; kopf processes it", exc_info=True)
            return False

    def _idle(self, raw_event: dict) -> bool:
        body = raw_event.get("object") or {}
        metadata = body.get("metadata") or {}
        awaited = self.patched.pop(metadata.get("uid"), None)
        if self._wanted_by_event_handlers(raw_event, body):
            return False
        if not self.changing:
            return True
        return (
            raw_event.get("type") == "MODIFIED"
            and awaited is not None
            and awaited == metadata.get("resourceVersion")
            and self._nothing_to_change(body, metadata)
        )

    def processed(self, raw_event: dict, patched_version: str | None) -> None:
        """After kopf processed the event: the version its patch, if any, awaits. Only a
        patch of a handling cycle is awaited: a cycle that only added or removed the finalizer
        ran no handler, and the echo of that patch is where kopf runs them (the resume of a
        schedule whose finalizer went while the operator was down, for one)."""
        body = raw_event.get("object") or {}
        metadata = body.get("metadata") or {}
        uid = metadata.get("uid")
        if not (self.changing and patched_version and uid) or raw_event.get("type") == "DELETED":
            return
        if metadata.get("deletionTimestamp") or not self._finalizer_as_required(metadata):
            return
        self.patched[uid] = patched_version

    def _finalizer_as_required(self, metadata: dict) -> bool:
        blocked = self.settings.persistence.finalizer in (metadata.get("finalizers") or ())
        return blocked == any(h.requires_finalizer for h in self.changing)

    def _nothing_to_change(self, body: dict, metadata: dict) -> bool:
        persistence = self.settings.persistence
        if metadata.get("deletionTimestamp") or not self._finalizer_as_required(metadata):
            return False
        if dicts.resolve(body, persistence.progress_storage.field, None):
            return False
        old = persistence.diffbase_storage.fetch(body=body)
        if old is None:
            return False
        new = persistence.diffbase_storage.build(body=body, extra_fields=self.extra_fields)
        old = persistence.progress_storage.clear(essence=old)
        new = persistence.progress_storage.clear(essence=new)
        return not diffs.diff(old, new)

    def _wanted_by_event_handlers(self, raw_event: dict, body: dict) -> bool:
        return any(self._accepts(h, raw_event, body) for h in self.watching)

    def _accepts(self, handler, raw_event: dict, body: dict) -> bool:
        """kopf's filters of an on-event handler, as `registries.match` applies them. Only
        where this cannot tell (a field filter, a callable label filter, a failing `when`) does
        it say yes: kopf then decides, and reports a failing filter itself."""
        if handler.field is not None:
            return True
        metadata = body.get("metadata") or {}
        for pattern, content in (
            (handler.labels, metadata.get("labels") or {}),
            (handler.annotations, metadata.get("annotations") or {}),
        ):
            if pattern and not _metadata_matches(pattern, content):
                return False
        if handler.when is None:
            return True
        try:
            return bool(handler.when(**self._filter_kwargs(raw_event, body)))
        except Exception:  # kopf calls it again, and says what failed
            log.debug("the filter of %s failed; the event goes to kopf", handler.id, exc_info=True)
            return True

    def _filter_kwargs(self, raw_event: dict, body: dict) -> dict:
        metadata = body.get("metadata") or {}
        return {
            "event": raw_event,
            "type": raw_event.get("type"),
            "body": body,
            "meta": metadata,
            "spec": body.get("spec") or {},
            "status": body.get("status") or {},
            "uid": metadata.get("uid"),
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "labels": metadata.get("labels") or {},
            "annotations": metadata.get("annotations") or {},
            "resource": self.resource,
            "memo": self.memo,
            "logger": log,
        }


def _metadata_matches(pattern, content: dict) -> bool:
    for key, value in pattern.items():
        if value is kopf.ABSENT:
            if key in content:
                return False
        elif value is kopf.PRESENT:
            if key not in content:
                return False
        elif callable(value):
            continue  # kopf calls it with the cause's arguments; this cannot tell
        elif content.get(key) != value:
            return False
    return True
