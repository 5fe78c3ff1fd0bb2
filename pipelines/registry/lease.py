"""A promotion lease: at most one ``promote``/``rollback`` of a registered model at a time.

MLflow has no compare-and-set on aliases or tags (last writer wins), but creating a registered
model is atomic: the name is unique in every backend (a unique key in sqlite/Postgres/MySQL, the
same store behind an ``mlflow server``). So the lease is a registered model
``<NAME>.promote-lease``: whoever creates it holds it, and deletes it when done. Its tags say who
holds it and until when; a holder that died is presumed gone after ``seconds`` and its lease is
broken (only if the tags still name it, so a fresh lease is never broken by mistake).
"""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from contextlib import contextmanager

from pipelines.errors import UserError

SUFFIX = ".promote-lease"


class LeaseBusy(UserError):
    pass


def lease_name(model_name: str) -> str:
    return model_name + SUFFIX


def holder_id() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _exists_error(e: Exception) -> bool:
    return "RESOURCE_ALREADY_EXISTS" in str(getattr(e, "error_code", "")) or "already exists" in str(e)


def try_acquire(client, model_name: str, holder: str, seconds: float) -> bool:
    """One attempt; True when this holder now owns the lease (breaks an expired one)."""
    from mlflow.exceptions import MlflowException

    name = lease_name(model_name)
    try:
        client.create_registered_model(
            name, tags={"lease.holder": holder, "lease.expires": f"{time.time() + seconds:.3f}"},
            description=f"promotion lease of {model_name!r}; deleted when the promote ends")
        return True
    except MlflowException as e:
        if not _exists_error(e):
            raise
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException:
        return False  # released meanwhile: the next attempt may win
    if float(tags.get("lease.expires", "inf")) < time.time():
        current = client.get_registered_model(name).tags.get("lease.holder")
        if current == tags.get("lease.holder"):
            try:
                client.delete_registered_model(name)  # stale: its holder died
            except MlflowException:
                pass
    return False


def release(client, model_name: str, holder: str) -> None:
    """Delete the lease if (and only if) this holder still owns it."""
    from mlflow.exceptions import MlflowException

    name = lease_name(model_name)
    try:
        if client.get_registered_model(name).tags.get("lease.holder") == holder:
            client.delete_registered_model(name)
    except MlflowException:
        pass


@contextmanager
def promotion_lease(client, model_name: str, *, seconds: float, wait_seconds: float):
    """Hold the lease for the ``with`` body; raise LeaseBusy after ``wait_seconds`` of waiting."""
    holder, deadline = holder_id(), time.monotonic() + wait_seconds
    while not try_acquire(client, model_name, holder, seconds):
        if time.monotonic() > deadline:
            tags = _tags_or_empty(client, lease_name(model_name))
            raise LeaseBusy(f"another promote of {model_name!r} holds the lease "
                            f"({tags.get('lease.holder', '?')}); retry when it has finished")
        time.sleep(0.2)
    try:
        yield holder
    finally:
        release(client, model_name, holder)


def _tags_or_empty(client, name: str) -> dict:
    try:
        return dict(client.get_registered_model(name).tags)
    except Exception:  # noqa: BLE001 - released meanwhile
        return {}
