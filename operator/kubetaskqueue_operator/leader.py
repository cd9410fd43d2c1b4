"""At most one active operator: leader election on a coordination.k8s.io/v1 Lease.

Same rules as client-go's leaderelection: a candidate takes the Lease when it is
free or its holder has not renewed it for ``lease_duration_s``; the holder
renews every ``retry_s`` and gives up leadership if it could not renew for
``renew_deadline_s`` (< lease duration, so it stops before anyone else may
start). Writes use resourceVersion, so two candidates cannot both win.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from kubetaskqueue_operator.kube import http_status

if TYPE_CHECKING:
    from lightkube import Client
    from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger(__name__)


class LeaseConflict(Exception):
    """Someone else wrote the Lease first (HTTP 409)."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str | None
    renewed_at: float | None  # epoch seconds
    duration_s: float
    transitions: int
    version: str | None = None  # metadata.resourceVersion


def expired(record: LeaseRecord, now: float) -> bool:
    return record.renewed_at is None or now > record.renewed_at + record.duration_s


def can_take(record: LeaseRecord | None, me: str, now: float) -> bool:
    return record is None or not record.holder or record.holder == me or expired(record, now)


class LeaseApi(Protocol):
    def read(self) -> LeaseRecord | None: ...

    def create(self, record: LeaseRecord) -> None: ...

    def replace(self, record: LeaseRecord) -> None:
        """Write ``record`` if the stored version still equals ``record.version``."""
        ...


class LeaderElector:
    def __init__(
        self,
        api: LeaseApi,
        identity: str,
        lease_duration_s: float = 15.0,
        renew_deadline_s: float = 10.0,
        retry_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api, self.identity, self.clock = api, identity, clock
        self.lease_duration_s, self.renew_deadline_s, self.retry_s = (
            lease_duration_s,
            renew_deadline_s,
            retry_s,
        )

    def try_acquire_or_renew(self, *, create: bool = True) -> bool:
        """One attempt; True if we hold the Lease afterwards. ``create=False`` (renewals):
        a Lease deleted under us is not made again: `helm uninstall` deletes it while this
        pod may still be terminating, and a recreated one would be left behind."""
        now = self.clock()
        try:
            old = self.api.read()
            if old is None and not create:
                log.warning("leader election: the Lease was deleted; not renewing it")
                return False
            if not can_take(old, self.identity, now):
                return False
            changed_hands = old is None or old.holder != self.identity
            new = LeaseRecord(
                holder=self.identity,
                renewed_at=now,
                duration_s=self.lease_duration_s,
                transitions=(old.transitions if old else 0) + (1 if old and changed_hands else 0),
                version=old.version if old else None,
            )
            if old is None:
                self.api.create(new)
            else:
                self.api.replace(new)
        except LeaseConflict:
            return False
        except Exception as exc:  # API down: not leader this round, try again later
            log.warning("leader election: %s", exc)
            return False
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Block until we lead (True) or ``stop`` is set (False)."""
        announced = False
        while not stop.is_set():
            if self.try_acquire_or_renew():
                log.info("leader election: %s leads", self.identity)
                return True
            if not announced:
                log.info("leader election: waiting for the Lease (another operator leads)")
                announced = True
            stop.wait(self.retry_s)
        return False

    def release(self) -> None:
        """On a clean exit, free the Lease so the next operator need not wait for expiry."""
        try:
            old = self.api.read()
            if old is not None and old.holder == self.identity:
                self.api.replace(dataclasses.replace(old, holder=None, renewed_at=None))
        except Exception as exc:  # best effort: the Lease expires anyway
            if http_status(exc) in (403, 404):  # helm uninstall removes the Role or Lease first
                log.info("leader election: the Lease or the right to write it is gone "
                         "(the release is being uninstalled?); nothing to release")
                return
            log.warning("leader election: could not release the Lease: %s", exc)

    def hold(self, lost: threading.Event, stop: threading.Event) -> None:
        """Renew until ``stop``; set ``lost`` if renewal failed for renew_deadline_s."""
        last_ok = self.clock()
        while not stop.wait(self.retry_s):
            if self.try_acquire_or_renew(create=False):
                last_ok = self.clock()
            elif self.clock() - last_ok > self.renew_deadline_s:
                log.error("leader election: could not renew the Lease; stepping down")
                lost.set()
                return


def _micro_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ClientLeaseApi:
    """LeaseApi on a lightkube Client (coordination.k8s.io/v1)."""

    def __init__(self, namespace: str, name: str, client: Client | None = None) -> None:
        from lightkube import Client

        from kubetaskqueue_operator.kube import COMPONENT, load_kube_config

        self.namespace, self.name = namespace, name
        self._client = client or Client(load_kube_config(), field_manager=COMPONENT)
        # Labels and annotations others put on the Lease (the chart's, Helm's ownership
        # marks), sent back on every write: a replace would drop them otherwise.
        self._kept: dict[str, Any] = {}

    def read(self) -> LeaseRecord | None:
        from lightkube.resources.coordination_v1 import Lease

        try:
            lease = self._client.get(Lease, self.name, namespace=self.namespace)
        except Exception as exc:
            if http_status(exc) == 404:
                return None
            raise
        meta = lease.metadata
        self._kept = {"labels": meta.labels, "annotations": meta.annotations} if meta else {}
        # A Lease made by the Helm chart has an empty spec: no holder, time or duration.
        spec = lease.spec
        renewed = spec.renewTime if spec else None
        return LeaseRecord(
            holder=(spec and spec.holderIdentity) or None,
            renewed_at=renewed.timestamp() if renewed else None,
            duration_s=float((spec and spec.leaseDurationSeconds) or 0),
            transitions=int((spec and spec.leaseTransitions) or 0),
            version=lease.metadata.resourceVersion if lease.metadata else None,
        )

    def _lease(self, record: LeaseRecord) -> Lease:
        from lightkube.models.coordination_v1 import LeaseSpec
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.coordination_v1 import Lease

        # MicroTime needs exactly six fractional digits; lightkube's encoder drops a zero
        # fraction ("...:05Z", which the API server refuses), so send the formatted string.
        # No renewal time (and no holder) is a released Lease.
        renew = None if record.renewed_at is None else _micro_time(record.renewed_at)
        return Lease(
            metadata=ObjectMeta(
                name=self.name, namespace=self.namespace, resourceVersion=record.version,
                **self._kept,
            ),
            spec=LeaseSpec(
                holderIdentity=record.holder,
                leaseDurationSeconds=int(record.duration_s),
                leaseTransitions=record.transitions,
                renewTime=cast("dt.datetime | None", renew),
            ),
        )

    def create(self, record: LeaseRecord) -> None:
        try:
            self._client.create(self._lease(record))
        except Exception as exc:
            if http_status(exc) == 409:
                raise LeaseConflict(str(exc)) from exc
            raise

    def replace(self, record: LeaseRecord) -> None:
        try:
            self._client.replace(self._lease(record))
        except Exception as exc:
            if http_status(exc) == 409:
                raise LeaseConflict(str(exc)) from exc
            raise


class MemoryLeaseApi:
    """An in-memory Lease with resourceVersion checks, for tests."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self._version = 0

    def read(self) -> LeaseRecord | None:
        return self.record

    def create(self, record: LeaseRecord) -> None:
        if self.record is not None:
            raise LeaseConflict("already exists")
        self._store(record)

    def replace(self, record: LeaseRecord) -> None:
        if self.record is None or record.version != self.record.version:
            raise LeaseConflict("resourceVersion changed")
        self._store(record)

    def _store(self, record: LeaseRecord) -> None:
        self._version += 1
        self.record = dataclasses.replace(record, version=str(self._version))
