"""The box's configuration in one human-readable JSON file (TinyDB), written atomically.

:class:`ConfigStore` keeps the same model as the provisioning file
(:mod:`firmware.config`): each section (``system``, ``extension``, ``user``, ``trunk``,
``queue``, ``ivr``, ``timecondition``, ``route.inbound``, ``route.outbound``,
``notification``) is a TinyDB table whose documents hold ``{"id", "pos", "data"}``, where
``data`` is the record exactly as it would be written in TOML. Every change is validated
with the provisioning file's validators (errors come back keyed by field, for the web
forms), written as a whole new file (temp file, fsync, rename, fsync of the directory: a
power cut leaves the old or the new file, never a torn one), then announced to
subscribers so the running box applies it without dropping calls.

Secrets: SIP passwords are never stored, only the digest HA1 ``H(number:realm:password)``
for MD5, SHA-256 and SHA-512/256 (RFC 7616 / RFC 8760) with the realm; web passwords only as
scrypt hashes (:func:`hash_password`); API tokens only as an HMAC with the box secret. SIP
trunk, SMTP and webhook secrets are kept as given (the box must present them) in the config
file, which is created with mode 0600. The box secret (32 random bytes, ``secret.key``,
mode 0600) keys digest nonces, web sessions and token hashes.

Provisioning: :meth:`ConfigStore.provision` seeds the store at first start and on
``--provision``. Re-provisioning REPLACES every section the file contains (all its records:
changes made on the web page to those sections are lost) and keeps the sections the file
does not mention. Extensions and users that keep their number/name and have no password in
the file keep their stored credentials; new ones without a password get a generated one,
returned once by ``provision`` so the caller can print it.
"""
from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from tinydb import TinyDB
from tinydb.storages import Storage

from firmware.config import (SECTIONS, ConfigIssue, Provisioning, ProvisioningError, field_docs,
                             generate_password, load_provisioning, password_problem, to_raw, toml_positions,
                             validate_raw)

log = logging.getLogger("firmware.store.config")

__all__ = [
    "ConfigStore", "ConfigStoreError", "ConfigValidationError", "ConfigChange", "GeneratedCredential",
    "SavedRecord", "SipCredentials", "AtomicJSONStorage", "hash_password", "verify_password",
    "digest_ha1", "box_secret", "MASK", "SECTION_KEYS",
]

MASK = "********"
"""What secrets look like in records shown to the web page; sending it back keeps the secret."""

SECTION_KEYS: dict[str, str | None] = {
    "extension": "number", "user": "name", "trunk": "name", "queue": "number", "ivr": "number",
    "timecondition": "number", "route.inbound": None, "route.outbound": None, "notification": None,
}
"""The natural key of each list section (None: records get a generated id)."""

_HA1_ALGS = {"md5": "md5", "sha256": "sha256", "sha512-256": "sha512_256"}
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2 ** 14, 8, 1, 32


class ConfigStoreError(Exception):
    """The config store cannot do what was asked (missing record, unreadable file...)."""


class ConfigValidationError(ConfigStoreError):
    """A change was refused; ``errors`` maps a field (``"password"``, ``"members.1"``,
    ``"security.ban_attempts"``; ``"_"`` for the record as a whole) to a message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" if k != "_" else v for k, v in self.errors.items()))


@dataclass(frozen=True)
class ConfigChange:
    """What changed (passed to subscribers after the file is safely written)."""

    section: str
    """Section name, or ``"*"`` for a whole (re-)provisioning or restore."""
    key: str
    """Record key ("" for system and ``"*"``)."""
    action: str
    """create, update, delete, move, provision or restore."""
    before: dict[str, Any] | None = None
    """The record before (TOML-shaped, secrets masked), None for create."""
    after: dict[str, Any] | None = None
    """The record after, None for delete."""


@dataclass(frozen=True)
class GeneratedCredential:
    """A password the box generated; show it once, it is not kept in clear."""

    kind: str
    """extension or user."""
    name: str
    """Extension number or user name."""
    password: str


@dataclass(frozen=True)
class SavedRecord:
    """Result of a create/update."""

    section: str
    key: str
    data: dict[str, Any]
    """The stored record (secrets masked)."""
    generated_password: str | None = None
    """Set when the box generated the password (show it once)."""


@dataclass(frozen=True)
class SipCredentials:
    """What the registrar needs to check a phone's digest response."""

    username: str
    realm: str
    ha1: dict[str, str]
    """Algorithm (md5, sha256, sha512-256) -> hex H(username:realm:password)."""


# --------------------------------------------------------------------------- files


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes, *, mode: int = 0o600, keep_backup: bool = False) -> None:
    """Replace ``path`` with ``data`` so that a power cut leaves the old or the new file.

    Writes a temp file in the same folder, fsyncs it, optionally hard-links the current file
    to ``path + ".bak"``, renames the temp file over ``path`` and fsyncs the folder.
    """
    p = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(p))
    tmp = f"{p}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    if keep_backup and os.path.exists(p):
        bak_tmp = f"{p}.bak-{secrets.token_hex(4)}"
        try:
            os.link(p, bak_tmp)
        except OSError:
            shutil.copyfile(p, bak_tmp)
        os.replace(bak_tmp, p + ".bak")
    os.replace(tmp, p)
    _fsync_dir(folder)


class AtomicJSONStorage(Storage):
    """TinyDB storage: one indented JSON file, replaced atomically on every write.

    Keeps the last written data in memory (this process is the file's only writer) and a
    ``.bak`` hard link to the previous version; a file that does not parse at open is
    replaced by its ``.bak`` (logged) or, without one, refused with a clear error.
    """

    def __init__(self, path: str, *, mode: int = 0o600) -> None:
        self.path = path
        self.mode = mode
        self._cache: dict[str, Any] | None = None
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        base = os.path.basename(path)
        for name in os.listdir(folder):
            if name.startswith(base + ".tmp-") or name.startswith(base + ".bak-"):
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass
        self.recovered_from_backup = False
        if os.path.exists(path):
            try:
                self._cache = self._load(path)
            except (ValueError, OSError) as e:
                bak = path + ".bak"
                if os.path.exists(bak):
                    log.error("config file %s is unreadable (%s); using the previous version %s", path, e, bak)
                    self._cache = self._load(bak)
                    os.replace(path, f"{path}.damaged-{int(time.time())}")
                    self.write(self._cache)
                    self.recovered_from_backup = True
                else:
                    raise ConfigStoreError(f"config file {path} is unreadable: {e}") from None

    @staticmethod
    def _load(path: str) -> dict[str, Any]:
        with open(path, "rb") as f:
            raw = f.read()
        if not raw.strip():
            return {}
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("the top level is not an object")
        return data

    def read(self) -> dict[str, Any] | None:
        if self._cache is None:
            return None
        return copy.deepcopy(self._cache)

    def write(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
        atomic_write(self.path, text.encode("utf-8"), mode=self.mode, keep_backup=True)
        self._cache = copy.deepcopy(data)

    def close(self) -> None:
        pass


def box_secret(data_dir: str | os.PathLike) -> bytes:
    """The box's 32-byte random secret (``secret.key``, mode 0600), created on first use."""
    path = os.path.join(os.fspath(data_dir), "secret.key")
    os.makedirs(os.fspath(data_dir), exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        st = os.stat(path)
        if st.st_mode & 0o077:
            os.chmod(path, 0o600)
        with open(path, "rb") as f:
            data = f.read()
        if len(data) != 32:
            raise ConfigStoreError(f"{path} holds {len(data)} bytes, not 32: remove it to make a new secret "
                                   "(web sessions and API tokens then stop working)")
        return data
    data = secrets.token_bytes(32)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(os.fspath(data_dir))
    return data


# --------------------------------------------------------------------------- hashing


def digest_ha1(username: str, realm: str, password: str, algorithm: str = "md5") -> str:
    """RFC 7616 section 3.4.2: HA1 = H(username ":" realm ":" password), lower-case hex."""
    name = _HA1_ALGS.get(algorithm.lower())
    if name is None:
        raise ValueError(f"unknown digest algorithm {algorithm!r}")
    return hashlib.new(name, f"{username}:{realm}:{password}".encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    """A web password hash: scrypt with N=2**14, r=8, p=1 (16 MiB of memory), a 16-byte
    random salt and a 32-byte key, encoded ``scrypt$16384$8$1$<salt>$<key>`` (base64)."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                         dklen=SCRYPT_DKLEN, maxmem=64 * 1024 * 1024)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(key)}"


def verify_password(encoded: str, password: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` hash (constant-time compare)."""
    try:
        kind, n, r, p, salt_b, key_b = encoded.split("$")
        if kind != "scrypt":
            return False
        salt, key = base64.b64decode(salt_b), base64.b64decode(key_b)
        got = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p),
                             dklen=len(key), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, key)


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


# --------------------------------------------------------------------------- the store


def _section_path(section: str) -> tuple:
    return tuple(section.split("."))


def _secret_fields(cls: type, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("secret"):
            out.append(prefix + f.metadata.get("key", f.name))
        if isinstance(f.default, object) and dataclasses.is_dataclass(f.default) and not isinstance(f.default, type):
            out.extend(_secret_fields(type(f.default), prefix + f.name + "."))
    return out


class ConfigStore:
    """The configuration of one box in ``<data_dir>/config.json`` (see the module docstring).

    Thread-safe (one lock around changes). Subscribers run synchronously in the thread
    that made the change, after the file is written.
    """

    FILE = "config.json"

    def __init__(self, data_dir: str | os.PathLike, *, clock: Callable[[], float] = time.time) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.secret = box_secret(self.data_dir)
        """The box secret (32 bytes)."""
        self.path = self.data_dir / self.FILE
        self.db = TinyDB(str(self.path), storage=AtomicJSONStorage)
        """The TinyDB database (read it; change the configuration only through this class)."""
        self._storage: AtomicJSONStorage = self.db.storage  # type: ignore[assignment]
        self._lock = threading.RLock()
        self._subscribers: list[Callable[[ConfigChange], None]] = []
        self._current: Provisioning | None = None
        self._sip_index: dict[str, SipCredentials] = {}
        self._sip_index_source: object = object()
        self.prompts_dir = self.data_dir / "prompts"
        """Relative prompt paths in the stored configuration are relative to this folder."""

    # ------------------------------------------------------------------ raw data helpers

    def _data(self) -> dict[str, Any]:
        return self._storage.read() or {}

    @staticmethod
    def _docs(data: dict[str, Any], table: str) -> list[dict[str, Any]]:
        docs = list((data.get(table) or {}).values())
        return sorted(docs, key=lambda d: (d.get("pos", 0), str(d.get("id", ""))))

    @staticmethod
    def _set_docs(data: dict[str, Any], table: str, docs: list[dict[str, Any]]) -> None:
        data[table] = {str(i + 1): {**d, "pos": i} for i, d in enumerate(docs)}

    def _raw_of(self, data: dict[str, Any]) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        sysdocs = self._docs(data, "system")
        if sysdocs:
            raw["system"] = copy.deepcopy(sysdocs[0]["data"])
        for section in SECTION_KEYS:
            items = [copy.deepcopy(d["data"]) for d in self._docs(data, section)]
            if not items:
                continue
            if section.startswith("route."):
                raw.setdefault("route", {})[section.split(".")[1]] = items
            else:
                raw[section] = items
        route_docs = self._docs(data, "route")
        if route_docs:
            raw.setdefault("route", {}).update(copy.deepcopy(route_docs[0]["data"]))
        return raw

    def raw(self) -> dict[str, Any]:
        """The whole configuration as a TOML-shaped dict (no SIP/web passwords: never stored)."""
        with self._lock:
            return self._raw_of(self._data())

    def is_provisioned(self) -> bool:
        """Whether the store was ever seeded (first start has not happened yet when False)."""
        with self._lock:
            return bool(self._docs(self._data(), "meta"))

    def current(self) -> Provisioning:
        """The configuration as a :class:`~firmware.config.Provisioning` (cached until a change)."""
        with self._lock:
            if self._current is None:
                prov, issues = validate_raw(self.raw(), base_dir=self.prompts_dir, check_files=False)
                if issues:
                    log.error("stored configuration has problems: %s", issues)
                self._current = prov
            return self._current

    def subscribe(self, callback: Callable[[ConfigChange], None]) -> Callable[[], None]:
        """Call ``callback(change)`` after every change; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)
        return unsubscribe

    def _notify(self, change: ConfigChange) -> None:
        for cb in list(self._subscribers):
            try:
                cb(change)
            except Exception:
                log.exception("config subscriber failed on %s", change)

    def _commit(self, data: dict[str, Any], change: ConfigChange) -> None:
        self._storage.write(data)
        self.db.clear_cache()
        self._current = None
        self._notify(change)

    # ------------------------------------------------------------------ validation

    def _issues(self, raw: dict[str, Any]) -> list[tuple[tuple, str]]:
        _, issues = validate_raw(raw, base_dir=self.prompts_dir, check_files=True)
        return issues

    def _errors_for(self, candidate: dict[str, Any], where: tuple, baseline: dict[str, Any] | None) -> dict[str, str]:
        issues = self._issues(candidate)
        if baseline is not None:
            old = {m for _, m in self._issues(baseline)}
            issues = [(k, m) for k, m in issues if m not in old]
        errors: dict[str, str] = {}
        for key, msg in issues:
            if where and key[:len(where)] == where and len(key) > len(where):
                field = ".".join(str(p) for p in key[len(where):])
            else:
                field = "_"
            errors[field] = f"{errors[field]}; {msg}" if field in errors else msg
        return errors

    # ------------------------------------------------------------------ reads for the web

    def _mask(self, section: str, record: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(record)
        cls = _record_class(section)
        for name in _secret_fields(cls):
            parts = name.split(".")
            d = out
            for p in parts[:-1]:
                d = d.get(p) if isinstance(d, dict) else None
                if d is None:
                    break
            if isinstance(d, dict) and d.get(parts[-1]):
                d[parts[-1]] = MASK
        return out

    def sections(self) -> list[str]:
        """Section names, in the order of the settings pages (``route``: blacklist and default)."""
        return [*SECTIONS, "route"]

    def fields(self, section: str) -> dict[str, str]:
        """Field -> help text of a section's records (docstrings of the model)."""
        docs = field_docs(_record_class(section))
        return {k: v for k, v in docs.items() if not (section == "route" and k in ("inbound", "outbound"))}

    def list(self, section: str) -> list[dict[str, Any]]:
        """Records of a list section, in order, each with its ``id`` (secrets masked)."""
        self._check_section(section, list_only=True)
        with self._lock:
            data = self._data()
            out = []
            for d in self._docs(data, section):
                rec = self._mask(section, d["data"])
                rec["id"] = d["id"]
                if section in ("extension", "user"):
                    rec["has_password"] = self._credential(data, section, d["id"]) is not None
                out.append(rec)
            return out

    def get(self, section: str, key: str = "") -> dict[str, Any] | None:
        """One record (``system`` and ``route`` need no key), secrets masked; None when absent."""
        if section == "system":
            return self._mask("system", to_raw(self.current().system))
        if section == "route":
            raw = to_raw(self.current().route)
            return {k: v for k, v in raw.items() if k not in ("inbound", "outbound")}
        for rec in self.list(section):
            if rec["id"] == key:
                return rec
        return None

    def _check_section(self, section: str, list_only: bool = False) -> None:
        if (section not in SECTIONS and section != "route") or (list_only and section in ("system", "route")):
            raise ConfigStoreError(f"unknown section {section!r}")

    # ------------------------------------------------------------------ changes

    def validate(self, section: str, data: Mapping[str, Any], *, key: str | None = None) -> dict[str, str]:
        """Field-keyed errors the record ``data`` would have (empty: fine). Nothing is stored."""
        try:
            self._prepare(section, dict(data), key)
        except ConfigValidationError as e:
            return e.errors
        return {}

    def _prepare(self, section: str, record: dict[str, Any], key: str | None,
                 delete: bool = False) -> tuple[dict[str, Any], str, dict[str, Any] | None, str | None]:
        self._check_section(section)
        data = self._data()
        baseline = self._raw_of(data)
        if section in ("system", "route"):
            if section == "route" and ({"inbound", "outbound"} & set(record)):
                raise ConfigValidationError({"_": "edit routes as the route.inbound and route.outbound sections"})
            before = self._docs(data, section)
            merged = _deep_merge(copy.deepcopy(before[0]["data"]) if before else {}, record)
            merged = self._unmask(merged, before[0]["data"] if before else {})
            candidate = copy.deepcopy(baseline)
            if section == "route":
                lists = {k: v for k, v in candidate.get("route", {}).items() if k in ("inbound", "outbound")}
                candidate["route"] = {**merged, **lists}
            else:
                candidate["system"] = merged
            errors = self._errors_for(candidate, (section,), baseline)
            if errors:
                raise ConfigValidationError(errors)
            self._set_docs(data, section, [{"id": section, "data": merged}])
            return data, "", before[0]["data"] if before else None, None
        docs = self._docs(data, section)
        natural = SECTION_KEYS[section]
        index = next((i for i, d in enumerate(docs) if d["id"] == key), None) if key is not None else None
        if key is not None and index is None:
            raise ConfigStoreError(f"no {section} {key!r}")
        before = docs[index]["data"] if index is not None else None
        if delete:
            assert index is not None
            docs.pop(index)
            new_key = key or ""
            new_record: dict[str, Any] = {}
        else:
            new_record = copy.deepcopy(record)
            new_record.pop("id", None)
            new_record.pop("has_password", None)
            if section in ("extension", "user") and new_record.get("password") in (MASK, "", None):
                new_record.pop("password", None)
            if before is not None:
                new_record = self._unmask(_deep_merge(copy.deepcopy(before), new_record), before)
            if natural:
                nk = new_record.get(natural)
                new_key = str(nk) if nk is not None else ""
                if isinstance(nk, int) and not isinstance(nk, bool):
                    new_record[natural] = str(nk)
            else:
                new_key = key or secrets.token_hex(4)
            doc = {"id": new_key, "data": new_record}
            if index is None:
                docs.append(doc)
                index = len(docs) - 1
            else:
                docs[index] = doc
        candidate = self._raw_of({**data, section: {str(i): {**d, "pos": i} for i, d in enumerate(docs)}})
        where = _section_path(section) + (index,) if not delete else ()
        errors = self._errors_for(candidate, where, baseline)
        if natural and not delete and not new_key:
            errors.setdefault(natural, f"missing required key {natural!r}")
        if errors:
            raise ConfigValidationError(errors)
        for d in docs:
            if section in ("extension", "user"):
                d["data"].pop("password", None)
        self._set_docs(data, section, docs)
        return data, new_key, before, record.get("password") if not delete else None

    def _unmask(self, record: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
        def walk(new: Any, old: Any) -> Any:
            if isinstance(new, dict):
                return {k: walk(v, old.get(k) if isinstance(old, dict) else None) for k, v in new.items()}
            if new == MASK:
                return old if old is not None else ""
            return new
        return walk(record, before)

    def create(self, section: str, data: Mapping[str, Any]) -> SavedRecord:
        """Add a record; raises :class:`ConfigValidationError` with field-keyed errors.

        Extensions and users without ``password`` get a generated one (in the result, once).
        """
        with self._lock:
            new, key, _, password = self._prepare(section, dict(data), None)
            generated = None
            if section in ("extension", "user"):
                if not password:
                    generated = password = generate_password()
                self._store_credential(new, section, key, password)
            rec = self._record_of(new, section, key)
            self._commit(new, ConfigChange(section, key, "create", None, rec))
            return SavedRecord(section, key, rec, generated)

    def update(self, section: str, key: str, changes: Mapping[str, Any]) -> SavedRecord:
        """Change fields of a record (others keep their values; a masked secret is kept).

        ``section="system"`` takes nested tables: ``{"security": {"ban_attempts": 3}}``;
        ``section="route"`` holds the caller ``blacklist`` and the ``default`` destination.
        A ``password`` in an extension/user change sets a new password (validated).
        Renaming a key (number/name) is allowed; references to the old key are reported as
        errors, not rewritten.
        """
        with self._lock:
            old_data = self._data()
            new, new_key, before, password = self._prepare(section, dict(changes),
                                                           key if section not in ("system", "route") else None)
            if section in ("extension", "user"):
                cred = self._credential(old_data, section, key)
                if password:
                    self._store_credential(new, section, new_key, password)
                elif new_key != key and cred is not None:
                    if section == "extension":
                        raise ConfigValidationError({"password": "a renumbered extension needs a new password "
                                                                 "(the digest includes the number)"})
                    self._move_credential(new, section, key, new_key)
                if new_key != key:
                    self._drop_credential(new, section, key)
            rec = self._record_of(new, section, new_key)
            self._commit(new, ConfigChange(section, new_key, "update", self._mask(section, before or {}), rec))
            return SavedRecord(section, new_key, rec, None)

    def delete(self, section: str, key: str) -> None:
        """Remove a record; refused (ConfigValidationError) when others still refer to it."""
        with self._lock:
            new, _, before, _ = self._prepare(section, {}, key, delete=True)
            if section in ("extension", "user"):
                self._drop_credential(new, section, key)
            self._commit(new, ConfigChange(section, key, "delete", self._mask(section, before or {}), None))

    def move(self, section: str, key: str, position: int) -> None:
        """Move a record of an ordered section (routes: first match wins) to ``position``."""
        self._check_section(section, list_only=True)
        with self._lock:
            data = self._data()
            docs = self._docs(data, section)
            index = next((i for i, d in enumerate(docs) if d["id"] == key), None)
            if index is None:
                raise ConfigStoreError(f"no {section} {key!r}")
            doc = docs.pop(index)
            docs.insert(max(0, min(position, len(docs))), doc)
            self._set_docs(data, section, docs)
            self._commit(data, ConfigChange(section, key, "move", None, None))

    def _record_of(self, data: dict[str, Any], section: str, key: str) -> dict[str, Any]:
        if section in ("system", "route"):
            return self._mask(section, self._docs(data, section)[0]["data"])
        for d in self._docs(data, section):
            if d["id"] == key:
                rec = self._mask(section, d["data"])
                rec["id"] = key
                return rec
        return {}

    # ------------------------------------------------------------------ credentials

    @staticmethod
    def _cred_id(section: str, key: str) -> str:
        return f"{section}:{key}"

    def _credential(self, data: dict[str, Any], section: str, key: str) -> dict[str, Any] | None:
        for d in self._docs(data, "credentials"):
            if d["id"] == self._cred_id(section, key):
                return d
        return None

    def _store_credential(self, data: dict[str, Any], section: str, key: str, password: str) -> None:
        docs = [d for d in self._docs(data, "credentials") if d["id"] != self._cred_id(section, key)]
        if section == "extension":
            realm = self._realm(data)
            doc = {"id": self._cred_id(section, key), "realm": realm,
                   "ha1": {alg: digest_ha1(key, realm, password, alg) for alg in _HA1_ALGS}}
        else:
            doc = {"id": self._cred_id(section, key), "hash": hash_password(password)}
        doc["changed_at"] = self.clock()
        docs.append(doc)
        self._set_docs(data, "credentials", docs)

    def _drop_credential(self, data: dict[str, Any], section: str, key: str) -> None:
        docs = [d for d in self._docs(data, "credentials") if d["id"] != self._cred_id(section, key)]
        self._set_docs(data, "credentials", docs)

    def _move_credential(self, data: dict[str, Any], section: str, old: str, new: str) -> None:
        docs = self._docs(data, "credentials")
        for d in docs:
            if d["id"] == self._cred_id(section, old):
                d["id"] = self._cred_id(section, new)
        self._set_docs(data, "credentials", docs)

    def _realm(self, data: dict[str, Any]) -> str:
        sysdocs = self._docs(data, "system")
        return (sysdocs[0]["data"].get("realm") if sysdocs else None) or "officebox"

    def set_password(self, section: str, key: str, password: str | None = None) -> str:
        """Set (or, with None, generate) the password of an extension or web user.

        Returns the password (show a generated one once). Raises ConfigValidationError for
        a weak password.
        """
        if section not in ("extension", "user"):
            raise ConfigStoreError("only extensions and users have passwords")
        with self._lock:
            data = self._data()
            if not any(d["id"] == key for d in self._docs(data, section)):
                raise ConfigStoreError(f"no {section} {key!r}")
            if password is None:
                password = generate_password()
            problem = password_problem(password, **({"number": key} if section == "extension" else {"name": key}))
            if problem:
                raise ConfigValidationError({"password": problem})
            self._store_credential(data, section, key, password)
            self._commit(data, ConfigChange(section, key, "update", None, None))
            return password

    def sip_credentials(self, number: str) -> SipCredentials | None:
        """Digest HA1 values of an extension (None: unknown extension or no password yet).

        Every REGISTER and INVITE asks, so the answer comes from an index rebuilt only after
        the file changed (a copy of the whole configuration per request held the box to
        about 100 call set-ups per second)."""
        with self._lock:
            source = self._storage._cache
            if self._sip_index_source is not source:
                index: dict[str, SipCredentials] = {}
                for d in self._docs(self._data(), "credentials"):
                    section, _, key = str(d.get("id", "")).partition(":")
                    if section == "extension" and key not in index and "ha1" in d:
                        index[key] = SipCredentials(key, d["realm"], dict(d["ha1"]))
                self._sip_index, self._sip_index_source = index, source
            c = self._sip_index.get(number)
        if c is None:
            return None
        return SipCredentials(c.username, c.realm, dict(c.ha1))

    def verify_user(self, name: str, password: str) -> dict[str, Any] | None:
        """The user record when ``password`` is right, else None (same work either way)."""
        with self._lock:
            data = self._data()
            d = self._credential(data, "user", name)
            rec = next((x["data"] for x in self._docs(data, "user") if x["id"] == name), None)
        ok = verify_password(d["hash"] if d else _DUMMY_HASH, password)
        if not ok or d is None or rec is None:
            return None
        return self._mask("user", rec)

    # ------------------------------------------------------------------ API tokens

    def _token_hash(self, token: str) -> str:
        return hmac.new(self.secret, token.encode("utf-8"), hashlib.sha256).hexdigest()

    def create_api_token(self, user: str, label: str = "") -> tuple[str, str]:
        """A new API token for ``user``: returns (token id, token). The token is shown once;
        only its HMAC-SHA256 with the box secret is stored."""
        with self._lock:
            data = self._data()
            if not any(d["id"] == user for d in self._docs(data, "user")):
                raise ConfigStoreError(f"no user {user!r}")
            tid = secrets.token_hex(4)
            token = f"obx_{tid}_{secrets.token_urlsafe(32)}"
            docs = self._docs(data, "tokens")
            docs.append({"id": tid, "user": user, "label": label, "hash": self._token_hash(token),
                         "created_at": self.clock()})
            self._set_docs(data, "tokens", docs)
            self._commit(data, ConfigChange("tokens", tid, "create", None, None))
            return tid, token

    def verify_api_token(self, token: str) -> str | None:
        """The user name a token belongs to, or None."""
        parts = token.split("_", 2) if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] != "obx":
            return None
        with self._lock:
            doc = next((d for d in self._docs(self._data(), "tokens") if d["id"] == parts[1]), None)
        if doc is None:
            return None
        return doc["user"] if hmac.compare_digest(doc["hash"], self._token_hash(token)) else None

    def api_tokens(self, user: str | None = None) -> list[dict[str, Any]]:
        """Tokens (id, user, label, created_at), never the token itself."""
        with self._lock:
            docs = self._docs(self._data(), "tokens")
        return [{k: d[k] for k in ("id", "user", "label", "created_at")} for d in docs
                if user is None or d["user"] == user]

    def revoke_api_token(self, token_id: str) -> bool:
        """Delete a token; False when there was none."""
        with self._lock:
            data = self._data()
            docs = self._docs(data, "tokens")
            kept = [d for d in docs if d["id"] != token_id]
            if len(kept) == len(docs):
                return False
            self._set_docs(data, "tokens", kept)
            self._commit(data, ConfigChange("tokens", token_id, "delete", None, None))
            return True

    # ------------------------------------------------------------------ provisioning

    def provision(self, prov: Provisioning, *, sections: Iterable[str] | None = None,
                  source: str = "") -> list[GeneratedCredential]:
        """Seed the store from a provisioning (see the module docstring for what is kept).

        ``sections``: the sections the file contains (``None``: all of them, as at first
        start). Returns the passwords the box generated, to be printed once. Raises
        :class:`~firmware.config.ProvisioningError` when the merged result is invalid
        (nothing is changed then).
        """
        full = to_raw(prov)
        wanted = set(SECTIONS) if sections is None else set(sections)
        with self._lock:
            data = self._data()
            raw = self._raw_of(data)
            passwords: dict[tuple[str, str], str] = {}
            for e in prov.extensions:
                if e.password:
                    passwords[("extension", e.number)] = e.password
            for u in prov.users:
                if u.password:
                    passwords[("user", u.name)] = u.password
            if "system" in wanted:
                raw["system"] = full.get("system", {})
            route_full = full.get("route", {})
            for section in SECTION_KEYS:
                if section not in wanted:
                    continue
                if section.startswith("route."):
                    raw.setdefault("route", {})[section.split(".")[1]] = route_full.get(section.split(".")[1], [])
                else:
                    raw[section] = full.get(section, [])
            if "route.inbound" in wanted or "route.outbound" in wanted or "route" in wanted:
                for k in ("blacklist", "default"):
                    if k in route_full:
                        raw.setdefault("route", {})[k] = route_full[k]
            _, issues = validate_raw(raw, base_dir=self.prompts_dir, check_files=False)
            if issues:
                raise ProvisioningError([ConfigIssue(source, 0, m, k) for k, m in issues])
            new: dict[str, Any] = {k: v for k, v in data.items() if k in ("credentials", "tokens")}
            old_realm = self._realm(data)
            self._set_docs(new, "system", [{"id": "system", "data": raw.get("system", {})}])
            route = raw.get("route", {})
            self._set_docs(new, "route", [{"id": "route", "data": {k: v for k, v in route.items()
                                                                   if k not in ("inbound", "outbound")}}])
            for section, natural in SECTION_KEYS.items():
                if section.startswith("route."):
                    items = route.get(section.split(".")[1], [])
                else:
                    items = raw.get(section, [])
                docs = []
                for item in items:
                    item = {k: v for k, v in item.items() if not (section in ("extension", "user") and k == "password")}
                    docs.append({"id": str(item[natural]) if natural else secrets.token_hex(4), "data": item})
                self._set_docs(new, section, docs)
            realm = self._realm(new)
            generated: list[GeneratedCredential] = []
            keep_ids = {f"extension:{d['id']}" for d in self._docs(new, "extension")} | \
                       {f"user:{d['id']}" for d in self._docs(new, "user")}
            self._set_docs(new, "credentials", [d for d in self._docs(new, "credentials") if d["id"] in keep_ids])
            for section in ("extension", "user"):
                for d in self._docs(new, section):
                    key = d["id"]
                    pw = passwords.get((section, key))
                    cred = self._credential(new, section, key)
                    stale = section == "extension" and cred is not None and cred.get("realm") != realm
                    if pw is None and (cred is None or stale):
                        pw = generate_password()
                        generated.append(GeneratedCredential(section, key, pw))
                    if pw is not None:
                        self._store_credential(new, section, key, pw)
            if old_realm != realm and self._docs(data, "credentials"):
                log.warning("SIP realm changed from %s to %s", old_realm, realm)
            self._set_docs(new, "meta", [{"id": "meta", "provisioned_at": self.clock(), "source": source,
                                          "sections": sorted(wanted)}])
            self._commit(new, ConfigChange("*", "", "provision", None, None))
            return generated

    def provision_file(self, path: str | os.PathLike) -> list[GeneratedCredential]:
        """Provision the sections a file contains (see the module docstring).

        The file may hold only some sections; references are checked against the merged
        result (the file's sections plus the store's others). Problems raise
        :class:`~firmware.config.ProvisioningError` with the file's line numbers (0 for a
        problem in a section the file does not contain); nothing changes then. Relative
        prompt paths are stored as absolute paths (relative to the file's folder).
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ProvisioningError([ConfigIssue(str(path), 0, "file not found")]) from None
        except UnicodeDecodeError:
            raise ProvisioningError([ConfigIssue(str(path), 0, "the file is not UTF-8 text")]) from None
        try:
            top = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            load_provisioning(path)
            raise
        sections = {k for k in top if k in SECTIONS}
        if isinstance(top.get("route"), dict):
            sections |= {"route", "route.inbound", "route.outbound"}
        base = p.resolve().parent
        _absolutize_prompts(top, base)
        with self._lock:
            merged = self._merged(self._raw_of(self._data()), top, sections)
            pos = toml_positions(text)
            prov, issues = validate_raw(merged, base_dir=base, check_files=True, positions=pos)
            if issues:
                found = [ConfigIssue(str(path), pos.line_of(k) if k and (k[0] in top) else 0, m, k)
                         for k, m in issues]
                raise ProvisioningError(sorted(found, key=lambda i: (i.line, i.message)))
            return self.provision(prov, sections=sections, source=str(path))

    @staticmethod
    def _merged(raw: dict[str, Any], new: dict[str, Any], sections: set[str]) -> dict[str, Any]:
        out = copy.deepcopy(raw)
        for section in sections:
            if section == "route":
                route = dict(out.get("route", {}))
                for k in ("blacklist", "default"):
                    route.pop(k, None)
                    if k in new.get("route", {}):
                        route[k] = new["route"][k]
                out["route"] = route
            elif section.startswith("route."):
                sub = section.split(".")[1]
                out.setdefault("route", {})[sub] = copy.deepcopy(new.get("route", {}).get(sub, []))
            else:
                out[section] = copy.deepcopy(new.get(section, {} if section == "system" else []))
        return out

    # ------------------------------------------------------------------ backup / restore

    def backup(self) -> bytes:
        """The whole configuration file (with hashed credentials and tokens) as bytes."""
        with self._lock:
            return (json.dumps({"officebox_config": 1, "data": self._data()}, indent=1,
                               ensure_ascii=False) + "\n").encode("utf-8")

    def restore(self, blob: bytes) -> None:
        """Replace the configuration with a :meth:`backup`; nothing changes when it is invalid
        (ConfigValidationError with the reasons)."""
        try:
            doc = json.loads(blob.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ConfigValidationError({"_": f"not a configuration backup (invalid JSON: {e})"}) from None
        if not isinstance(doc, dict) or doc.get("officebox_config") != 1 or not isinstance(doc.get("data"), dict):
            raise ConfigValidationError({"_": "not a configuration backup of this box type"})
        data = doc["data"]
        for table, docs in data.items():
            if not isinstance(docs, dict) or not all(isinstance(d, dict) and "id" in d for d in docs.values()):
                raise ConfigValidationError({"_": f"backup table {table!r} is malformed"})
        with self._lock:
            _, issues = validate_raw(self._raw_of(data), base_dir=self.prompts_dir, check_files=False)
            if issues:
                raise ConfigValidationError({"_": "; ".join(m for _, m in issues[:20])})
            for d in self._docs(data, "credentials"):
                if not (("ha1" in d and "realm" in d) or str(d.get("hash", "")).startswith("scrypt$")):
                    raise ConfigValidationError({"_": f"backup credential {d.get('id')!r} is malformed"})
            self._commit(copy.deepcopy(data), ConfigChange("*", "", "restore", None, None))


def _record_class(section: str) -> type:
    from firmware.config import Routes
    return Routes if section == "route" else SECTIONS[section]


def _deep_merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in changes.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict) and k != "options":
            base[k] = _deep_merge(base[k], v)
        elif v is None:
            base.pop(k, None)
        else:
            base[k] = copy.deepcopy(dict(v)) if isinstance(v, Mapping) else copy.deepcopy(v)
    return base


_PROMPT_FIELDS = {"queue": ("announce", "periodic_message", "music"),
                  "ivr": ("prompt", "invalid_prompt", "timeout_prompt")}


def _absolutize_prompts(raw: dict[str, Any], base: Path) -> None:
    for section, names in _PROMPT_FIELDS.items():
        for rec in raw.get(section, []) if isinstance(raw.get(section), list) else []:
            if not isinstance(rec, dict):
                continue
            for name in names:
                v = rec.get(name)
                if isinstance(v, str) and v and v != "default" and (v.lower().endswith(".wav") or "/" in v) \
                        and not os.path.isabs(v):
                    rec[name] = str(base / v)
