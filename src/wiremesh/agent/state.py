"""The agent's enrollment on disk: a JSON state file and the WireGuard private key.

Both files are written atomically (a temporary file in the same directory, fsync, rename)
and created with mode 0600 from the start, so no other user can read them even for an
instant. The private key is written first and the state file records the public key, so
a crash between the two renames is detected on load instead of running with a mismatch.

Commands that change part of the state (``servers set``, ``rotate-key``) read, change and
write it under :func:`state_lock`, so neither undoes the other's change.

Format 1 held one ``server_url``; format 2 holds the ordered list ``server_urls``. A
format-1 file is read as a one-URL list and is written as format 2 by the next change;
reading never writes, so a read can never race a writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wiremesh.agent.keys import InvalidKey, public_key_of
from wiremesh.agent.servers import InvalidServerURL, normalize_server_urls

__all__ = [
    "DEFAULT_STATE_DIR",
    "KEY_FILE",
    "LOCK_FILE",
    "STATE_DIR_ENV",
    "STATE_FILE",
    "EnrolledDevice",
    "EnrolledNetwork",
    "Enrollment",
    "NotEnrolled",
    "StateError",
    "check_writable",
    "file_signature",
    "load_enrollment",
    "load_private_key",
    "resolve_state_dir",
    "save_enrollment",
    "set_server_urls",
    "state_lock",
    "write_private_file",
]

logger = logging.getLogger("wiremesh.agent")

DEFAULT_STATE_DIR: Final = Path("/var/lib/wiremesh")
STATE_DIR_ENV: Final = "WIREMESH_AGENT_STATE_DIR"
STATE_FILE: Final = "agent.json"
KEY_FILE: Final = "private.key"
LOCK_FILE: Final = ".lock"
STATE_FORMAT: Final = 2
SINGLE_SERVER_FORMAT: Final = 1
"""The first format, with one ``server_url``: still read, never written."""


class StateError(Exception):
    """The state directory cannot be used; the message says what to do."""


class NotEnrolled(StateError):
    """No enrollment in the state directory."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EnrolledDevice(_Model):
    """This device as the server registered it."""

    id: int
    org_id: int
    user_id: int
    peer_id: str
    hostname: str
    virtual_ip: str
    public_key: str | None


class EnrolledNetwork(_Model):
    """The organization's network the device belongs to."""

    org_id: int
    org_name: str
    network: str


class Enrollment(_Model):
    """Everything ``wiremesh agent up`` needs, except the private key (its own file)."""

    format: int = STATE_FORMAT
    server_urls: tuple[str, ...]
    """Every replica this device may use, in the order the agent tries them."""
    credential: str = Field(repr=False)
    device: EnrolledDevice
    network: EnrolledNetwork
    enrolled_at: datetime
    listen_port: int | None = Field(default=None, ge=1, le=65535)
    """WireGuard's UDP port, drawn once for this device (``--listen-port`` overrides it)."""

    @field_validator("server_urls")
    @classmethod
    def _normalized_server_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        return normalize_server_urls(urls)


LISTEN_PORTS: Final = range(20000, 32768)
"""Where a device's port is drawn from: below Linux's ephemeral ports (32768 and up), so no
program's outgoing socket holds it. Devices behind one NAT each need their own: a NAT keeps
one public port per socket only while no other device behind it uses the same port."""


def draw_listen_port() -> int:
    return secrets.choice(LISTEN_PORTS)


def ensure_listen_port(state_dir: Path) -> int:
    """The device's own port: the stored one, or one drawn now and stored (an enrollment
    made before ports were stored has none)."""
    with state_lock(state_dir):
        enrollment = load_enrollment(state_dir)
        if enrollment.listen_port is not None:
            return enrollment.listen_port
        port = draw_listen_port()
        _write_state(state_dir, enrollment.model_copy(update={"listen_port": port}))
        return port


def resolve_state_dir(flag: Path | None) -> Path:
    """``--state-dir``, else ``$WIREMESH_AGENT_STATE_DIR``, else ``/var/lib/wiremesh``."""
    if flag is not None:
        return flag
    from_env = os.environ.get(STATE_DIR_ENV)
    return Path(from_env) if from_env else DEFAULT_STATE_DIR


def write_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, readable by the owner only (0600).

    The temporary file is created with ``O_EXCL`` and mode 0600 (never chmod-ed later),
    flushed to disk, then renamed over ``path``; the directory is synced so the rename
    survives a power cut.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # not supported everywhere; the data itself is already synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _ensure_directory(state_dir: Path) -> None:
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create the state directory {state_dir}: {exc.strerror}") from exc
    if not state_dir.is_dir():
        raise StateError(f"{state_dir} is not a directory")


def check_writable(state_dir: Path) -> None:
    """Fail early (before enrolling) if the state cannot be written there; writes nothing."""
    existing = state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StateError(
            f"cannot use {state_dir} as the state directory: {existing} is not a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StateError(f"cannot write to {existing}; run as root or choose another --state-dir")


def save_enrollment(state_dir: Path, enrollment: Enrollment, private_key: str) -> None:
    """Store the private key, then the state file (both 0600, each atomically)."""
    if enrollment.device.public_key != public_key_of(private_key):
        raise ValueError("the enrollment's public key does not match the private key")
    _ensure_directory(state_dir)
    try:
        write_private_file(state_dir / KEY_FILE, (private_key + "\n").encode("ascii"))
    except OSError as exc:
        raise StateError(f"cannot write the agent state in {state_dir}: {exc.strerror}") from exc
    _write_state(state_dir, enrollment)


def _write_state(state_dir: Path, enrollment: Enrollment) -> None:
    try:
        write_private_file(
            state_dir / STATE_FILE, (enrollment.model_dump_json(indent=2) + "\n").encode("utf-8")
        )
    except OSError as exc:
        raise StateError(f"cannot write the agent state in {state_dir}: {exc.strerror}") from exc


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Hold the state directory's lock while reading, changing and writing the state.

    An advisory ``flock`` on a 0600 file beside the state: released by the kernel when
    the process dies, so a crash never leaves it held. Hold it for file work only, never
    across a network request.
    """
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except FileNotFoundError:
        raise NotEnrolled(
            f"this device is not enrolled (no {state_dir}): run `wiremesh agent enroll` first"
        ) from None
    except OSError as exc:
        raise StateError(f"cannot lock the agent state in {state_dir}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def set_server_urls(state_dir: Path, urls: Iterable[str]) -> Enrollment:
    """Replace the server list (validated first, written atomically); the new enrollment.

    A running agent uses the new list from its next connection attempt.
    """
    try:
        server_urls = normalize_server_urls(urls)
    except InvalidServerURL as exc:
        raise StateError(str(exc)) from None
    with state_lock(state_dir):
        enrollment = load_enrollment(state_dir)
        updated = enrollment.model_copy(update={"server_urls": server_urls})
        _write_state(state_dir, updated)
    return updated


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """Inode, mtime and size: every atomic replacement changes it (a new inode); None if absent."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _read_private(path: Path) -> str:
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from exc
    if stat.S_IMODE(info.st_mode) & 0o077:
        logger.warning("%s is readable by other users; it should be mode 0600", path)
    return text


def load_enrollment(state_dir: Path) -> Enrollment:
    """The stored enrollment; :class:`NotEnrolled` or :class:`StateError` if unusable."""
    path = state_dir / STATE_FILE
    if not path.exists():
        raise NotEnrolled(
            f"this device is not enrolled (no {path}): run `wiremesh agent enroll` first"
        )
    text = _read_private(path)
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise _damaged(path, f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _damaged(path, "not a JSON object")
    state_format = data.get("format", STATE_FORMAT)
    if state_format == SINGLE_SERVER_FORMAT:
        data = _from_single_server_format(data)
    elif state_format != STATE_FORMAT:
        raise StateError(
            f"the state file {path} has format {state_format}, this agent reads "
            f"formats {SINGLE_SERVER_FORMAT} and {STATE_FORMAT}"
        )
    try:
        return Enrollment.model_validate(data)
    except ValidationError as exc:
        summary = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or '<root>'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)[:3]
        )
        raise _damaged(path, summary) from None


def _damaged(path: Path, summary: str) -> StateError:
    return StateError(
        f"the state file {path} is damaged ({summary}); "
        "enroll again with `wiremesh agent enroll --force`"
    )


def _from_single_server_format(data: dict[str, Any]) -> dict[str, Any]:
    """A format-1 state (one ``server_url``) as format 2 (a list of one)."""
    upgraded = {key: value for key, value in data.items() if key != "server_url"}
    upgraded["format"] = STATE_FORMAT
    if "server_url" in data:
        upgraded["server_urls"] = [data["server_url"]]
    return upgraded


def load_private_key(state_dir: Path, enrollment: Enrollment) -> str:
    """The device's private key, checked against the enrolled public key."""
    path = state_dir / KEY_FILE
    if not path.exists():
        raise StateError(
            f"the private key {path} is missing; enroll again with `wiremesh agent enroll --force`"
        )
    private_key = _read_private(path).strip()
    try:
        public_key = public_key_of(private_key)
    except InvalidKey as exc:
        raise StateError(f"{path} does not hold a WireGuard private key ({exc})") from None
    if enrollment.device.public_key != public_key:
        raise StateError(
            f"{path} does not belong to the enrolled device (public keys differ); "
            "enroll again with `wiremesh agent enroll --force`"
        )
    return private_key


def state_summary(enrollment: Enrollment) -> dict[str, object]:
    """What ``wiremesh agent status`` shows: never the credential."""
    data = json.loads(enrollment.model_dump_json(exclude={"credential"}))
    assert isinstance(data, dict)
    return data
