"""The store: apps, versions, installs, consent, keys and the audit trail.

Every change runs in one write transaction that also appends its audit entries and bumps
the change counter (PostgreSQL: plus NOTIFY), so an observer never sees one without the
other. Locks are always taken in the order app -> install -> keys -> counter.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from permgate import manifest as manifest_mod
from permgate.store import engine as engine_mod
from permgate.store import keys, migrate
from permgate.store.consent import effective
from permgate.store.consent_schema import oauth_codes, oauth_refresh_tokens
from permgate.store.errors import (
    Conflict,
    Forbidden,
    InvalidManifest,
    NotFound,
    SchemaOutOfDate,
    StoreError,
)
from permgate.store.model import (
    ADMIN_ROLES,
    MODES,
    AppInfo,
    AuditEntry,
    EffectiveGrant,
    InstallResult,
    KeyInfo,
    KeyRecord,
    NewKey,
    UploadResult,
    VersionInfo,
)
from permgate.store.schema import api_keys, app_versions, apps, audit_log, installs, state

DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=7)
NOTIFY_CHANNEL = "permgate_changes"
_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]{1,200}")

_latest = app_versions.alias("latest")
_approved = app_versions.alias("approved")
_GRANTS = (
    sa.select(
        installs.c.install_id, installs.c.app_id, installs.c.account, installs.c.mode,
        installs.c.approved_permissions,
        _approved.c.version.label("approved_version"),
        _latest.c.version.label("installed_version"),
        _latest.c.permissions.label("requested"),
    )
    .select_from(
        installs.join(apps, apps.c.app_id == installs.c.app_id)
        .join(_latest, sa.and_(
            _latest.c.app_id == apps.c.app_id, _latest.c.seq == apps.c.latest_seq))
        .join(_approved, sa.and_(
            _approved.c.app_id == installs.c.app_id,
            _approved.c.seq == installs.c.approved_seq))
    )
    .where(installs.c.uninstalled_at.is_(None))
)


def _grant(row: RowMapping) -> EffectiveGrant:
    usable, pending, status = effective(
        frozenset(row["approved_permissions"]), frozenset(row["requested"])
    )
    return EffectiveGrant(
        install_id=row["install_id"], app_id=row["app_id"], account=row["account"],
        mode=row["mode"], installed_version=row["installed_version"],
        approved_version=row["approved_version"], approved=usable, pending=pending,
        status=status,
    )


def _version(row: RowMapping) -> VersionInfo:
    return VersionInfo(
        app_id=row["app_id"], version=row["version"], seq=row["seq"],
        permissions=frozenset(row["permissions"]), access_type=row["access_type"],
        uploaded_at=row["uploaded_at"], uploaded_by=row["uploaded_by"],
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _schema_message(have: str | None, want: str) -> str:
    if have is None:
        return "this database has not been set up: run `permgate db upgrade`"
    if have in migrate.known_revisions():
        return ("this database was set up by an older permgate: run `permgate db upgrade` "
                f"(it is at schema {have}, this permgate needs {want})")
    return (f"this database was set up by a newer permgate (schema {have}, unknown to this "
            "one): upgrade permgate")


def _check_mode(mode: str, allowed: Sequence[str] = MODES) -> None:
    if mode not in allowed:
        raise StoreError(f"mode must be one of {', '.join(allowed)}, not {mode!r}", "bad_mode")


def _check_account(account: str) -> None:
    if not _ACCOUNT.fullmatch(account):
        raise StoreError(f"account must look like acct_..., not {account!r}", "bad_account")


def _require_admin(role: str, action: str) -> None:
    if role not in ADMIN_ROLES:
        raise Forbidden(
            f"only an account administrator (role=admin) may {action} apps (super_admin "
            f"may too); role {role!r} may not"
        )


class Store:
    """Open with `Store.open(url)`; close with `close()` or a `with` block."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**engine_mod.WRITE)
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        # Set by `open(upgrade=True)`: the schema revision found before the upgrade (None:
        # an empty database, created now), so `db upgrade` can say which it was.
        self.upgraded_from: str | None = None
        # Changes committed through this object: a process serving its own writes (the
        # gateway's mounted admin API and consent pages) learns of them without a query.
        self.writes = 0
        self._writes_lock = threading.Lock()

    @classmethod
    def open(
        cls, url: str | None = None, *, upgrade: bool = False,
        clock: Callable[[], datetime] = _utcnow, progress: bool = False,
    ) -> Store:
        """Open the database at `url` (None: $PERMGATE_DB, else `default_database()`).

        Refuses a database that is not at the latest migration unless `upgrade` is true;
        `progress`: the migrations an upgrade runs show a bar on stderr if it is a terminal.
        """
        engine = engine_mod.create(engine_mod.resolve_url(url), create_file=upgrade)
        before: str | None = None
        try:
            if upgrade:
                before = migrate.upgrade(engine, progress=progress)
            else:
                have, want = migrate.current(engine), migrate.head()
                if have != want:
                    raise SchemaOutOfDate(_schema_message(have, want))
        except sa.exc.DatabaseError as e:
            engine.dispose()
            where = engine_mod.sqlite_file(engine.url)
            if where is not None and "not a database" in str(e.orig):
                raise StoreError(f"{where} is not a permgate database (it is not SQLite at "
                                 "all)", "not_a_database") from e
            reason = " ".join(str(e.orig).split())  # drivers' messages span lines
            raise StoreError(f"cannot open the database: {reason}",
                             "database_unavailable") from e
        except BaseException:
            engine.dispose()
            raise
        store = cls(engine, clock=clock)
        store.upgraded_from = before
        try:
            store._check_api(claim=upgrade)
        except BaseException:
            engine.dispose()
            raise
        return store

    def _check_api(self, *, claim: bool) -> None:
        """Refuse a database set up for another API than this process's (`permgate.use_api`):
        an own API's permission names can also be Stripe's, and its grants must not be
        decided as another API's. A database without apps becomes this API's; `claim`
        (`db upgrade`): an own API's changed tables are accepted."""
        import permgate

        profile = permgate.api_profile()
        name, tables = profile.name, profile.tables_sha256
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(state.c.api, state.c.api_tables)
                               .where(state.c.id == 1)).first()
            have, have_tables = (None, None) if row is None else (row[0], row[1])
            if have is not None and have != name and not conn.execute(
                    sa.select(sa.exists().select_from(apps))).scalar():
                have = None  # no app yet: nothing was consented under the other API
        if have is not None and have != name:
            how = "--api DIR (or PERMGATE_API)" if have != "stripe" else \
                "neither --api nor PERMGATE_API"
            raise StoreError(f"this database belongs to the {have!r} API, not {name!r}: use "
                             f"{how} with it, or another database (one API per database)",
                             "api_mismatch")
        if have is not None and have_tables != tables and not claim:
            raise StoreError(f"the {name!r} API's tables changed since this database recorded "
                             "them (its apps were consented under the old ones): check the "
                             "changes, then run `permgate db upgrade` with the same --api to "
                             "accept them", "api_tables_changed")
        # An unclaimed (or empty) database is this API's from its first open on: the apps
        # uploaded next are consented under this API.
        if (have is None or (claim and have_tables != tables)) and (
                row is None or (row[0], row[1]) != (name, tables)):
            self.claim_api()

    def claim_api(self) -> None:
        """Record this process's API (and its tables' fingerprint) in the database."""
        import permgate

        profile = permgate.api_profile()
        with self.engine.begin() as conn:
            conn.execute(state.update().where(state.c.id == 1).values(
                api=profile.name, api_tables=profile.tables_sha256))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # -- the gateway's reads: one indexed query each ---------------------------------------

    def authenticate(self, secret: str) -> KeyInfo | None:
        """The key's owner, or None for an unknown, revoked or expired key."""
        if not keys.well_formed(secret):
            return None
        stmt = sa.select(
            api_keys.c.key_id, api_keys.c.app_id, api_keys.c.mode, api_keys.c.kind,
            api_keys.c.install_id, api_keys.c.account, api_keys.c.expires_at,
        ).where(api_keys.c.secret_hash == keys.hash_secret(secret),
                api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        expires = None if row is None else row["expires_at"]
        if row is None or (expires is not None and expires <= self._clock()):
            return None
        # An OAuth access token acts exactly as a restricted key of its install.
        kind: Literal["secret", "restricted"] = (
            "secret" if row["kind"] == "secret" else "restricted")
        return KeyInfo(
            key_id=row["key_id"], app_id=row["app_id"], mode=row["mode"], kind=kind,
            install_id=row["install_id"], account=row["account"],
            expires_at=row["expires_at"],
        )

    def effective_grant(self, app_id: str, account: str, mode: str) -> EffectiveGrant | None:
        """What the app may do on `account` in `mode` now; None when it is not installed."""
        stmt = _GRANTS.where(
            installs.c.app_id == app_id, installs.c.account == account, installs.c.mode == mode
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else _grant(row)

    def installs_for_account(self, account: str, mode: str | None = None) -> list[EffectiveGrant]:
        return self.list_installs(account=account, mode=mode)

    def installs_for_accounts(self, accounts: Iterable[str]) -> dict[str, list[EffectiveGrant]]:
        """`installs_for_account` for many accounts in one query (events route in batches);
        every account asked for is a key, with [] when nothing is installed there."""
        wanted = sorted(set(accounts))
        out: dict[str, list[EffectiveGrant]] = {a: [] for a in wanted}
        stmt = _GRANTS.order_by(installs.c.app_id, installs.c.account, installs.c.mode)
        with self.engine.connect() as conn:
            for k in range(0, len(wanted), 500):  # bounded IN lists
                rows = conn.execute(stmt.where(installs.c.account.in_(wanted[k:k + 500])))
                for r in rows.mappings():
                    out[r["account"]].append(_grant(r))
        return out

    def list_installs(
        self, *, app_id: str | None = None, account: str | None = None, mode: str | None = None
    ) -> list[EffectiveGrant]:
        stmt = _GRANTS.order_by(installs.c.app_id, installs.c.account, installs.c.mode)
        if app_id is not None:
            stmt = stmt.where(installs.c.app_id == app_id)
        if account is not None:
            stmt = stmt.where(installs.c.account == account)
        if mode is not None:
            stmt = stmt.where(installs.c.mode == mode)
        with self.engine.connect() as conn:
            return [_grant(r) for r in conn.execute(stmt).mappings()]

    def get_install(self, app_id: str, account: str, mode: str) -> EffectiveGrant:
        grant = self.effective_grant(app_id, account, mode)
        if grant is None:
            raise NotFound(f"{app_id} is not installed on {account} in {mode} mode",
                           "not_installed")
        return grant

    def change_counter(self) -> int:
        """Bumped by every change, in the change's own transaction."""
        with self.engine.connect() as conn:
            return int(conn.execute(
                sa.select(state.c.change_counter).where(state.c.id == 1)).scalar_one())

    # -- apps and versions ----------------------------------------------------------------

    def list_apps(self) -> list[AppInfo]:
        with self.engine.connect() as conn:
            app_rows = conn.execute(sa.select(apps).order_by(apps.c.app_id)).mappings().all()
            versions = conn.execute(
                sa.select(app_versions).order_by(app_versions.c.app_id, app_versions.c.seq)
            ).mappings().all()
        by_app: dict[str, list[VersionInfo]] = {}
        for v in versions:
            by_app.setdefault(v["app_id"], []).append(_version(v))
        return [self._app(a, by_app[a["app_id"]]) for a in app_rows]

    def get_app(self, app_id: str) -> AppInfo:
        with self.engine.connect() as conn:
            app = conn.execute(sa.select(apps).where(apps.c.app_id == app_id)).mappings().first()
            if app is None:
                raise NotFound(f"no app {app_id!r}", "app_not_found")
            versions = conn.execute(
                sa.select(app_versions).where(app_versions.c.app_id == app_id)
                .order_by(app_versions.c.seq)
            ).mappings().all()
        return self._app(app, [_version(v) for v in versions])

    @staticmethod
    def _app(row: RowMapping, versions: list[VersionInfo]) -> AppInfo:
        latest = next(v for v in versions if v.seq == row["latest_seq"])
        return AppInfo(
            app_id=row["app_id"], name=row["name"], latest=latest, versions=tuple(versions),
            created_at=row["created_at"], created_by=row["created_by"],
        )

    def get_manifest_text(self, app_id: str, version: str) -> str:
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(app_versions.c.manifest_text).where(
                app_versions.c.app_id == app_id, app_versions.c.version == version)).scalar()
        if text is None:
            raise NotFound(f"no version {version!r} of {app_id!r}", "version_not_found")
        return str(text)

    def upload_version(self, manifest: manifest_mod.Manifest, *, actor: str) -> UploadResult:
        """Store a validated manifest as the app's newest, immutable version.

        The first upload of an app id creates the app and its test and live secret keys
        (returned here, and never again). Installs move to the new version at once; whether
        they may use its permissions follows the consent rule.
        """
        problems = manifest_mod.validate(manifest)
        if problems:
            listed = "; ".join(f"{p.pointer or '/'}: {p.message}" for p in problems)
            raise InvalidManifest(
                f"{manifest.name}: manifest is invalid, nothing stored: {listed}", problems
            )
        data = manifest.data
        if "extends" in data:
            # A stored version must stand alone; the merge is the uploader's job.
            raise InvalidManifest(
                f"{manifest.name}: a local manifest (`extends`) cannot be uploaded; "
                "upload the merged or base stripe-app.json")
        app_id, version = data.get("id"), data.get("version")
        if not isinstance(app_id, str) or not isinstance(version, str) or not app_id or not version:
            raise InvalidManifest(f"{manifest.name}: a manifest needs a string `id` and `version`")
        permissions = sorted(set(manifest.permission_names))
        access_type = str(data.get("stripe_api_access_type") or "platform")
        name = str(data.get("name") or app_id)
        now = self._clock()
        with self._change(actor) as tx:
            app = tx.conn.execute(
                sa.select(apps).where(apps.c.app_id == app_id).with_for_update()
            ).mappings().first()
            created = app is None
            seq = 1 if app is None else int(app["latest_seq"]) + 1
            if app is None:
                self._insert_unique(tx.conn, apps.insert().values(
                    app_id=app_id, name=name, latest_seq=seq, created_at=now, created_by=actor,
                ), f"app {app_id} was created concurrently; upload again")
            else:
                clash = tx.conn.execute(sa.select(app_versions.c.seq).where(
                    app_versions.c.app_id == app_id, app_versions.c.version == version)).first()
                if clash is not None:
                    raise Conflict(
                        f"{app_id} version {version} was already uploaded; versions are "
                        "immutable: raise `version` in the manifest", "version_exists")
                tx.conn.execute(apps.update().where(apps.c.app_id == app_id)
                                .values(latest_seq=seq, name=name))
            tx.conn.execute(app_versions.insert().values(
                app_id=app_id, seq=seq, version=version, permissions=permissions,
                access_type=access_type, manifest=data, manifest_text=manifest.text,
                uploaded_at=now, uploaded_by=actor,
            ))
            if created:
                tx.audit("app.created", app_id=app_id, version=version, name=name)
            tx.audit("version.uploaded", app_id=app_id, version=version,
                     permissions=permissions, access_type=access_type)
            new_keys = tuple(
                self._mint(tx, app_id, mode, "secret") for mode in ("test", "live")
            ) if created else ()
        info = VersionInfo(app_id, version, seq, frozenset(permissions), access_type, now, actor)
        return UploadResult(version=info, created_app=created, keys=new_keys)

    # -- installs and consent -------------------------------------------------------------

    def install(
        self, app_id: str, account: str, mode: str, *, by: str, role: str,
        via: str = "operator",
    ) -> InstallResult:
        """An administrator installs the app's current version, accepting exactly its set."""
        _require_admin(role, "install")
        _check_account(account)
        _check_mode(mode)
        now = self._clock()
        with self._change(by) as tx:
            latest = self._latest_locked(tx.conn, app_id)
            active = tx.conn.execute(sa.select(installs.c.install_id).where(
                installs.c.app_id == app_id, installs.c.account == account,
                installs.c.mode == mode, installs.c.uninstalled_at.is_(None))).first()
            if active is not None:
                raise Conflict(f"{app_id} is already installed on {account} in {mode} mode",
                               "already_installed")
            install_id = keys.new_id("inst")
            self._insert_unique(tx.conn, installs.insert().values(
                install_id=install_id, app_id=app_id, account=account, mode=mode,
                approved_seq=latest["seq"], approved_permissions=latest["permissions"],
                approved_by=by, approved_at=now, installed_by=by, installed_at=now,
            ), f"{app_id} was installed on {account} in {mode} mode concurrently")
            tx.audit("install.created", app_id=app_id, account=account, mode=mode,
                     version=latest["version"], install_id=install_id,
                     permissions=latest["permissions"], role=role, via=via)
            key = None
            if latest["access_type"] == "restricted_api_key":
                key = self._mint(tx, app_id, mode, "restricted", install_id, account)
            grant = self._grant_in(tx.conn, install_id)
        return InstallResult(grant=grant, key=key)

    def approve(
        self, app_id: str, account: str, mode: str, *, by: str, role: str,
        version: str | None = None, via: str = "operator",
    ) -> EffectiveGrant:
        """An administrator approves exactly the set of `version` (default: the latest).

        Approving anything but the latest version is a conflict: a newer version was uploaded
        since the administrator looked, and its set is what the app would get.
        """
        _require_admin(role, "approve")
        _check_mode(mode)
        now = self._clock()
        with self._change(by) as tx:
            latest = self._latest_locked(tx.conn, app_id)
            inst = self._active_locked(tx.conn, app_id, account, mode)
            if version is not None and version != latest["version"]:
                known = tx.conn.execute(sa.select(app_versions.c.seq).where(
                    app_versions.c.app_id == app_id, app_versions.c.version == version)).first()
                if known is None:
                    raise NotFound(f"no version {version!r} of {app_id}", "version_not_found")
                raise Conflict(
                    f"{app_id} version {version} is no longer the latest: version "
                    f"{latest['version']} was uploaded since; review and approve that one",
                    "version_superseded")
            previous = sorted(inst["approved_permissions"])
            tx.conn.execute(installs.update().where(
                installs.c.install_id == inst["install_id"]).values(
                approved_seq=latest["seq"], approved_permissions=latest["permissions"],
                approved_by=by, approved_at=now))
            tx.audit("install.approved", app_id=app_id, account=account, mode=mode,
                     version=latest["version"], install_id=inst["install_id"],
                     permissions=latest["permissions"], previous=previous, role=role,
                     via=via)
            return self._grant_in(tx.conn, inst["install_id"])

    def uninstall(
        self, app_id: str, account: str, mode: str, *, by: str, role: str,
        via: str = "operator",
    ) -> EffectiveGrant:
        """Revoke every grant of the install, its restricted keys and OAuth tokens, at once.

        Returns the grant the install had. A later install starts a fresh approval.
        """
        _require_admin(role, "uninstall")
        _check_mode(mode)
        now = self._clock()
        with self._change(by) as tx:
            inst = self._active_locked(tx.conn, app_id, account, mode)
            grant = self._grant_in(tx.conn, inst["install_id"])
            tx.conn.execute(installs.update().where(
                installs.c.install_id == inst["install_id"]).values(
                uninstalled_at=now, uninstalled_by=by))
            revoked = tx.conn.execute(
                api_keys.update().where(api_keys.c.install_id == inst["install_id"],
                                        api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now).returning(api_keys.c.key_id)).scalars().all()
            tx.conn.execute(oauth_refresh_tokens.update().where(
                oauth_refresh_tokens.c.install_id == inst["install_id"],
                oauth_refresh_tokens.c.revoked_at.is_(None)).values(revoked_at=now))
            tx.conn.execute(oauth_codes.update().where(
                oauth_codes.c.install_id == inst["install_id"],
                oauth_codes.c.used_at.is_(None)).values(used_at=now))
            tx.audit("install.removed", app_id=app_id, account=account, mode=mode,
                     install_id=inst["install_id"], revoked_keys=sorted(revoked), role=role,
                     via=via)
        return grant

    # -- keys -----------------------------------------------------------------------------

    def rotate_key(
        self, app_id: str, mode: str, *, grace: timedelta = DEFAULT_GRACE,
        actor: str = "system", account: str | None = None,
    ) -> NewKey:
        """A new key; the old one keeps working for `grace` (0: revoked at once).

        Without `account`: the app's secret key for `mode` (live or test). With `account`:
        the restricted key of that install (minted if it has none).
        """
        if grace < timedelta(0) or grace > MAX_GRACE:
            raise StoreError(f"grace must be between 0 and {MAX_GRACE.days} days",
                             "bad_grace_period")
        _check_mode(mode, ("live", "test") if account is None else MODES)
        now = self._clock()
        with self._change(actor) as tx:
            self._latest_locked(tx.conn, app_id)
            if account is None:
                install_id = None
                scope = sa.and_(api_keys.c.app_id == app_id, api_keys.c.mode == mode,
                                api_keys.c.kind == "secret")
            else:
                install_id = self._active_locked(tx.conn, app_id, account, mode)["install_id"]
                # OAuth access tokens live an hour and rotate by refresh: not rotated here.
                scope = sa.and_(api_keys.c.install_id == install_id,
                                api_keys.c.kind == "restricted")
            usable = sa.and_(scope, api_keys.c.revoked_at.is_(None), sa.or_(
                api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now))
            if grace:
                until = now + grace
                old = tx.conn.execute(api_keys.update().where(usable, sa.or_(
                    api_keys.c.expires_at.is_(None), api_keys.c.expires_at > until))
                    .values(expires_at=until).returning(api_keys.c.key_id)).scalars().all()
            else:
                old = tx.conn.execute(api_keys.update().where(usable).values(revoked_at=now)
                                      .returning(api_keys.c.key_id)).scalars().all()
            kind: Literal["secret", "restricted"] = "secret" if account is None else "restricted"
            key = self._mint(tx, app_id, mode, kind, install_id, account, audit=False)
            tx.audit("key.rotated", app_id=app_id, account=account, mode=mode,
                     key_id=key.key_id, kind=kind, old_keys=sorted(old),
                     old_keys_expire_at=(now + grace).isoformat())
        return key

    def list_keys(self, app_id: str) -> list[KeyRecord]:
        self.get_app(app_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                # OAuth access tokens (one an hour per install) are not listed as keys.
                sa.select(api_keys).where(api_keys.c.app_id == app_id,
                                          api_keys.c.kind != "oauth")
                .order_by(api_keys.c.created_at, api_keys.c.key_id)).mappings().all()
        return [KeyRecord(
            key_id=r["key_id"], app_id=r["app_id"], mode=r["mode"], kind=r["kind"],
            hint=r["hint"], install_id=r["install_id"], account=r["account"],
            created_at=r["created_at"], expires_at=r["expires_at"], revoked_at=r["revoked_at"],
        ) for r in rows]

    def now(self) -> datetime:
        return self._clock()

    # -- audit ----------------------------------------------------------------------------

    def audit(
        self, *, app: str | None = None, account: str | None = None,
        since: datetime | None = None, limit: int | None = None,
    ) -> list[AuditEntry]:
        """Audit entries, oldest first (with `limit`: the newest `limit` of them)."""
        stmt = sa.select(audit_log).order_by(audit_log.c.id.desc())
        if app is not None:
            stmt = stmt.where(audit_log.c.app_id == app)
        if account is not None:
            stmt = stmt.where(audit_log.c.account == account)
        if since is not None:
            stmt = stmt.where(audit_log.c.at >= since)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [AuditEntry(
            id=r["id"], at=r["at"], actor=r["actor"], action=r["action"], app_id=r["app_id"],
            account=r["account"], mode=r["mode"], version=r["version"], detail=r["detail"],
        ) for r in reversed(rows)]

    # -- internals ------------------------------------------------------------------------

    @contextmanager
    def _change(self, actor: str) -> Iterator[_Tx]:
        if not actor:
            raise StoreError("every change needs an actor (--by)", "actor_required")
        try:
            with self._writer.begin() as conn:
                tx = _Tx(conn, actor, self._clock())
                yield tx
                counter = conn.execute(
                    state.update().where(state.c.id == 1)
                    .values(change_counter=state.c.change_counter + 1)
                    .returning(state.c.change_counter)).scalar_one()
                if self._postgres:
                    # Delivered at commit, so listeners never see an uncommitted change.
                    # Channels are database-wide: the schema says which store changed.
                    conn.execute(sa.select(sa.func.pg_notify(
                        NOTIFY_CHANNEL, sa.func.current_schema() + f":{counter}")))
        except sa.exc.OperationalError as e:
            raise StoreError(f"database error: {e.orig}", "database_error") from e
        with self._writes_lock:  # committed: counted after, never before
            self.writes += 1

    @staticmethod
    def _insert_unique(conn: Connection, stmt: sa.Insert, clash: str) -> None:
        try:
            with conn.begin_nested():
                conn.execute(stmt)
        except sa.exc.IntegrityError as e:
            raise Conflict(clash, "conflict") from e

    @staticmethod
    def _latest_locked(conn: Connection, app_id: str) -> RowMapping:
        """The app's latest version; the app row is share-locked so no upload slips in."""
        app = conn.execute(sa.select(apps.c.latest_seq).where(apps.c.app_id == app_id)
                           .with_for_update(read=True)).first()
        if app is None:
            raise NotFound(f"no app {app_id!r}", "app_not_found")
        return conn.execute(sa.select(app_versions).where(
            app_versions.c.app_id == app_id, app_versions.c.seq == app.latest_seq)
        ).mappings().one()

    @staticmethod
    def _active_locked(conn: Connection, app_id: str, account: str, mode: str) -> RowMapping:
        row = conn.execute(sa.select(installs).where(
            installs.c.app_id == app_id, installs.c.account == account,
            installs.c.mode == mode, installs.c.uninstalled_at.is_(None)).with_for_update()
        ).mappings().first()
        if row is None:
            raise NotFound(f"{app_id} is not installed on {account} in {mode} mode",
                           "not_installed")
        return row

    @staticmethod
    def _grant_in(conn: Connection, install_id: str) -> EffectiveGrant:
        return _grant(conn.execute(
            _GRANTS.where(installs.c.install_id == install_id)).mappings().one())

    def _mint(
        self, tx: _Tx, app_id: str, mode: str, kind: Literal["secret", "restricted"],
        install_id: str | None = None, account: str | None = None, *, audit: bool = True,
    ) -> NewKey:
        secret = keys.new_secret(kind, mode)
        key_id = keys.new_id("key")
        tx.conn.execute(api_keys.insert().values(
            key_id=key_id, app_id=app_id, mode=mode, kind=kind, install_id=install_id,
            account=account, secret_hash=keys.hash_secret(secret), hint=keys.hint(secret),
            created_at=tx.now, created_by=tx.actor,
        ))
        if audit:
            tx.audit("key.created", app_id=app_id, account=account, mode=mode, key_id=key_id,
                     kind=kind)
        return NewKey(key_id=key_id, app_id=app_id, mode=mode, kind=kind, secret=secret,
                      account=account)


class _Tx:
    """One write transaction: its connection, actor and time, and its audit entries."""

    def __init__(self, conn: Connection, actor: str, now: datetime) -> None:
        self.conn, self.actor, self.now = conn, actor, now

    def audit(
        self, action: str, *, app_id: str | None = None, account: str | None = None,
        mode: str | None = None, version: str | None = None, **detail: Any,
    ) -> None:
        append_audit(self.conn, self.actor, action, at=self.now, app_id=app_id,
                     account=account, mode=mode, version=version, **detail)


def append_audit(
    conn: Connection, actor: str, action: str, *, at: datetime, app_id: str | None = None,
    account: str | None = None, mode: str | None = None, version: str | None = None,
    **detail: Any,
) -> None:
    """One entry of the append-only trail, inside the caller's transaction (layers above the
    store, such as events, record their own changes with it)."""
    conn.execute(audit_log.insert().values(
        at=at, actor=actor, action=action, app_id=app_id, account=account, mode=mode,
        version=version, detail=_jsonable(detail)))


def _jsonable(detail: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if v is not None}
