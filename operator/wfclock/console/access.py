"""Who the user is and what they may see, asked of the API server; and the user's own client.

The console's own login only reviews tokens (TokenReview) and asks access questions
(SubjectAccessReview). Everything a user sees or does goes through a client holding the user's
own token, so RBAC stays the one source of who may see and do what, and a refusal comes back
with the API server's own message."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from wfclock.core.model import API_GROUP, API_VERSION, PLURAL


class SignInRefused(Exception):
    """The token was not accepted; the message says why, for the sign-in page."""


@dataclass(frozen=True)
class User:
    username: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...]


def api_message(exc: ApiException) -> str:
    """The API server's own words for a refusal (its Status `message`)."""
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"


def base_configuration(kubeconfig: str = "") -> client.Configuration:
    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG", "")
    if path or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_kube_config(config_file=path or None, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    return configuration


def _user_configuration(base: client.Configuration, token: str) -> client.Configuration:
    """The API server and its CA from the console's own configuration, and nothing of its
    credentials: only the user's bearer token."""
    configuration = client.Configuration()
    configuration.host = base.host
    configuration.ssl_ca_cert = base.ssl_ca_cert
    configuration.verify_ssl = base.verify_ssl
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return configuration


class ClusterAccess:
    def __init__(self, base: client.Configuration):
        self.base = base
        self.own = client.ApiClient(base)

    def review_token(self, token: str) -> User:
        token = token.strip()
        if not token:
            raise SignInRefused("token: empty; paste a Kubernetes bearer token")
        if any(c.isspace() for c in token):
            raise SignInRefused("token: contains spaces or line breaks; paste the token alone")
        try:
            review = client.AuthenticationV1Api(self.own).create_token_review(
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "spec": {"token": token},
                }
            )
        except ApiException as exc:
            raise SignInRefused(
                f"the API server could not review the token: {api_message(exc)}"
            ) from None
        status = review.status
        if not status.authenticated:
            raise SignInRefused(
                "token: not accepted by the API server"
                + (f" ({status.error})" if status.error else "")
            )
        user = status.user
        return User(
            username=user.username or "",
            uid=user.uid or "",
            groups=tuple(user.groups or ()),
            extra=tuple(sorted((k, tuple(v)) for k, v in (user.extra or {}).items())),
        )

    def may(
        self, user: User, verb: str, namespace: str, resource: str = PLURAL, group: str = API_GROUP
    ) -> bool:
        review = client.AuthorizationV1Api(self.own).create_subject_access_review(
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user.username,
                    "uid": user.uid or None,
                    "groups": list(user.groups),
                    "extra": {k: list(v) for k, v in user.extra} or None,
                    "resourceAttributes": {
                        "namespace": namespace,
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                    },
                },
            }
        )
        return bool(review.status.allowed)

    def visible_namespaces(self, user: User, candidates: list[str]) -> list[str]:
        """The candidates in which the user may list WorkflowSchedules."""
        return [ns for ns in sorted(set(candidates)) if self.may(user, "list", ns)]

    def as_user(self, token: str) -> UserKube:
        return UserKube(client.ApiClient(_user_configuration(self.base, token)))

    def close(self) -> None:
        self.own.close()


class UserKube:
    """The Kubernetes API as the signed-in user."""

    def __init__(self, api: client.ApiClient):
        self.api = api
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def __enter__(self) -> UserKube:
        return self

    def __exit__(self, *exc) -> None:
        self.api.close()

    def schedules(self, namespace: str) -> list[dict]:
        return self.objects.list_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL
        )["items"]

    def schedule(self, namespace: str, name: str) -> dict:
        return self.objects.get_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, name
        )

    def events(self, namespace: str, name: str) -> list[dict]:
        found = self.core.list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.kind=WorkflowSchedule,involvedObject.name={name}",
        )
        return [self.api.sanitize_for_serialization(e) for e in found.items]

    def _patch(self, namespace: str, name: str, body: dict) -> dict:
        return self.objects.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, name, body
        )

    def pause(self, namespace: str, name: str, reason: str, by: str) -> dict:
        """spec.paused with the reason in spec.pauseReason (where the CRD has the field) and in
        an annotation (where it does not and the API server prunes it)."""
        return self._patch(
            namespace,
            name,
            {
                "metadata": {
                    "annotations": {
                        "wfclock.dev/pause-reason": reason,
                        "wfclock.dev/paused-by": by,
                        "wfclock.dev/resume-reason": None,
                    }
                },
                "spec": {"paused": True, "pauseReason": reason},
            },
        )

    def resume(self, namespace: str, name: str, reason: str, by: str) -> dict:
        return self._patch(
            namespace,
            name,
            {
                "metadata": {
                    "annotations": {
                        "wfclock.dev/pause-reason": None,
                        "wfclock.dev/paused-by": None,
                        "wfclock.dev/resume-reason": f"{reason} ({by})" if reason else by,
                    }
                },
                "spec": {"paused": False, "pauseReason": None},
            },
        )

    def run_now(self, namespace: str, name: str, now: datetime) -> dict:
        """The run-now annotation (its value the request's instant): the operator fires once
        for it, through the launcher, like any fire."""
        stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._patch(
            namespace, name, {"metadata": {"annotations": {"wfclock.dev/run-now": stamp}}}
        )
