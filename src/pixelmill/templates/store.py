"""Templates in the database: versions (drafts change, published versions never do), release
tags and their rollouts, evaluation sets. Every change writes its audit row in its own
transaction; every read goes to the database, so a rollback is seen by the very next request on
every host."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, or_, select, update

from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx, write_tx
from pixelmill.db.schema import evaluation_sets, evaluations, template_releases, template_versions, templates, tenants
from pixelmill.exceptions import Conflict, NotFound, ValidationError
from pixelmill.observe.audit import AuditLog
from pixelmill.templates.rollout import Release
from pixelmill.templates.spec import TemplateSpec

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TAG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
DEFAULT_RELEASE = "stable"
#: Who reads: a tenant id (its own templates and shared ones), or None for an admin (all).
Reader = str | None


def check_name(name: str, field: str = "name", pattern: re.Pattern[str] = NAME) -> str:
    if not pattern.match(name):
        raise ValidationError(field, f"{name!r}: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit")
    return name


class TemplateStore:
    def __init__(self, engine: Engine, clock: Clock, audit: AuditLog, promotion_needs_evaluation: bool = False) -> None:
        self._engine = engine
        self._clock = clock
        self._audit = audit
        #: Promoting a version needs a finished evaluation of it against the version it replaces.
        self.promotion_needs_evaluation = promotion_needs_evaluation

    # --- templates and versions --------------------------------------------------------------------

    def create(
        self, name: str, description: str, spec: TemplateSpec, actor: str, note: str = "", author: str | None = None,
        *, tenant_id: str | None = None,
    ) -> dict[str, Any]:
        """A new template with its first version, a draft; ``tenant_id`` owns it (None: shared)."""
        check_name(name)
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            if conn.execute(select(templates.c.name).where(templates.c.name == name)).first():
                raise Conflict(f"template {name} exists; add a version to it instead")
            if tenant_id is not None and conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
                raise ValidationError("tenant", f"no tenant {tenant_id}")
            conn.execute(insert(templates).values(name=name, description=description, created_at=now, created_by=actor,
                                                  tenant_id=tenant_id))
            self._insert_version(conn, name, 1, spec, author or actor, note, now)
            self._audit.record(conn, actor, "template", name, "created", {"version": 1, "content_hash": spec.content_hash()})
        return self.show(name)

    def add_version(self, name: str, spec: TemplateSpec, actor: str, note: str = "", author: str | None = None) -> dict[str, Any]:
        """A new draft after the template's last version."""
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            self._template_row(conn, name)
            version = (conn.execute(select(func.max(template_versions.c.version)).where(template_versions.c.template == name)).scalar() or 0) + 1
            self._insert_version(conn, name, version, spec, author or actor, note, now)
            self._audit.record(conn, actor, "template", name, "drafted", {"version": version, "content_hash": spec.content_hash()})
        return self.version(name, version)

    def edit_draft(self, name: str, version: int, spec: TemplateSpec, actor: str, note: str | None = None) -> dict[str, Any]:
        """Change a draft; a published version is refused (409): publish a new version instead."""
        v = template_versions.c
        with write_tx(self._engine) as conn:
            current = self._version_row(conn, name, version)
            if current.state != "draft":
                raise Conflict(f"template {name} v{version} is published and cannot change; add a new version")
            values: dict[str, Any] = {"spec": spec.model_dump(mode="json"), "content_hash": spec.content_hash()}
            if note is not None:
                values["note"] = note
            conn.execute(update(template_versions).where(v.template == name, v.version == version, v.state == "draft").values(**values))
            self._audit.record(conn, actor, "template", name, "edited", {"version": version, "content_hash": spec.content_hash()})
        return self.version(name, version)

    def publish(self, name: str, version: int, actor: str) -> dict[str, Any]:
        """Freeze a draft: from now on it can be released and used, and never changes."""
        v = template_versions.c
        with write_tx(self._engine) as conn:
            current = self._version_row(conn, name, version)
            if current.state == "published":
                raise Conflict(f"template {name} v{version} is already published")
            conn.execute(update(template_versions).where(v.template == name, v.version == version)
                         .values(state="published", published_at=self._clock.now_ms()))
            self._audit.record(conn, actor, "template", name, "published", {"version": version, "content_hash": current.content_hash})
        return self.version(name, version)

    def _insert_version(self, conn: Connection, name: str, version: int, spec: TemplateSpec, author: str, note: str, now: int) -> None:
        conn.execute(insert(template_versions).values(
            template=name, version=version, state="draft", spec=spec.model_dump(mode="json"),
            content_hash=spec.content_hash(), author=author, note=note, created_at=now,
        ))

    # --- reading -------------------------------------------------------------------------------------

    def exists(self, name: str, reader: Reader = None) -> bool:
        """Whether ``name`` exists for ``reader`` (None: for anybody; else a tenant's keys see
        their own templates and shared ones)."""
        query = select(templates.c.name).where(templates.c.name == name)
        if reader is not None:
            query = query.where(_readable_by(reader))
        with read_tx(self._engine) as conn:
            return conn.execute(query).first() is not None

    def check_readable(self, name: str, reader: Reader) -> None:
        """``NotFound`` unless ``reader``'s tenant may read ``name``: another tenant's template
        is answered as missing, so its existence is not told either."""
        if not self.exists(name, reader):
            raise NotFound(f"no template {name}")

    def names(self, reader: Reader = None) -> list[dict[str, Any]]:
        query = select(templates).order_by(templates.c.name)
        if reader is not None:
            query = query.where(_readable_by(reader))
        with read_tx(self._engine) as conn:
            rows = conn.execute(query).all()
            return [self._summary(conn, r) for r in rows]

    def show(self, name: str) -> dict[str, Any]:
        """The template with every version (newest first) and every release tag."""
        with read_tx(self._engine) as conn:
            row = self._template_row(conn, name)
            versions = conn.execute(
                select(template_versions).where(template_versions.c.template == name).order_by(template_versions.c.version.desc())
            ).all()
            summary = self._summary(conn, row) | {"versions": [_version_view(v) for v in versions]}
            # What stands in the way of promoting each rollout now (None: nothing), for a console
            # that disables Promote and says why rather than letting it fail.
            for release in summary["releases"].values():
                candidate = release["candidate"]
                release["promote_blocked"] = (None if candidate is None
                                              else self._promotion_blocker(conn, name, candidate, release["version"]))
            return summary

    def _summary(self, conn: Connection, row: Any) -> dict[str, Any]:
        releases = conn.execute(select(template_releases).where(template_releases.c.template == row.name)).all()
        return {
            "name": row.name, "description": row.description, "created_at": row.created_at, "created_by": row.created_by,
            "tenant": row.tenant_id, "releases": {r.tag: _release(r).to_json() for r in releases},
        }

    def version(self, name: str, version: int) -> dict[str, Any]:
        with read_tx(self._engine) as conn:
            return _version_view(self._version_row(conn, name, version))

    def spec(self, name: str, version: int, *, published: bool = True) -> TemplateSpec:
        with read_tx(self._engine) as conn:
            row = self._version_row(conn, name, version)
        if published and row.state != "published":
            raise ValidationError("template_version", f"template {name} v{version} is a draft; publish it first")
        return TemplateSpec.model_validate(row.spec)

    def release(self, name: str, tag: str) -> Release:
        with read_tx(self._engine) as conn:
            self._template_row(conn, name)
            return self._release_row(conn, name, tag)

    def _template_row(self, conn: Connection, name: str) -> Any:
        row = conn.execute(select(templates).where(templates.c.name == name)).first()
        if row is None:
            raise NotFound(f"no template {name}")
        return row

    def _version_row(self, conn: Connection, name: str, version: int) -> Any:
        v = template_versions.c
        row = conn.execute(select(template_versions).where(v.template == name, v.version == version)).first()
        if row is None:
            self._template_row(conn, name)
            raise NotFound(f"template {name} has no version {version}")
        return row

    def _release_row(self, conn: Connection, name: str, tag: str) -> Release:
        r = template_releases.c
        row = conn.execute(select(template_releases).where(r.template == name, r.tag == tag)).first()
        if row is None:
            raise NotFound(f"template {name} has no release {tag}; point it at a version first (PUT .../releases/{tag})")
        return _release(row)

    # --- releases ------------------------------------------------------------------------------------

    def point(self, name: str, tag: str, version: int, actor: str) -> Release:
        """Point ``tag`` at a published version (creating the tag); ends any rollout on it."""
        check_name(tag, "tag", TAG)
        with write_tx(self._engine) as conn:
            self._published(conn, name, version)
            r = template_releases.c
            row = conn.execute(select(template_releases).where(r.template == name, r.tag == tag).with_for_update()).first()
            now = self._clock.now_ms()
            if row is None:
                conn.execute(insert(template_releases).values(
                    template=name, tag=tag, version=version, candidate=None, percent=0, paused=False, previous_version=None,
                    updated_at=now, updated_by=actor,
                ))
            else:
                if version != row.version:
                    self._check_evaluated(conn, name, version, row.version)
                self._set(conn, name, tag, actor, version=version, candidate=None, percent=0, paused=False,
                          previous_version=row.version if version != row.version else row.previous_version)
            self._audit.record(conn, actor, "template", name, "released", {"tag": tag, "version": version,
                                                                           "was": row.version if row else None})
            return self._release_row(conn, name, tag)

    def rollout(self, name: str, tag: str, candidate: int, percent: int, actor: str) -> Release:
        """Serve ``candidate`` to ``percent`` % of subjects on ``tag`` (0 stops it)."""
        if not 0 <= percent <= 100:
            raise ValidationError("percent", f"a percentage 0-100, got {percent}")
        with write_tx(self._engine) as conn:
            release = self._locked(conn, name, tag)
            self._published(conn, name, candidate)
            if candidate == release.version:
                raise ValidationError("version", f"v{candidate} is what {tag} serves already")
            self._set(conn, name, tag, actor, candidate=candidate, percent=percent, paused=False)
            self._audit.record(conn, actor, "template", name, "rollout", {"tag": tag, "candidate": candidate, "percent": percent})
            return self._release_row(conn, name, tag)

    def promote(self, name: str, tag: str, actor: str) -> Release:
        """The candidate becomes what ``tag`` serves to everyone."""
        with write_tx(self._engine) as conn:
            release = self._locked(conn, name, tag)
            if release.candidate is None:
                raise Conflict(f"{name}/{tag} has no rollout to promote")
            self._check_evaluated(conn, name, release.candidate, release.version)
            self._set(conn, name, tag, actor, version=release.candidate, candidate=None, percent=0, paused=False,
                      previous_version=release.version)
            self._audit.record(conn, actor, "template", name, "promoted", {"tag": tag, "version": release.candidate, "was": release.version})
            return self._release_row(conn, name, tag)

    def pause(self, name: str, tag: str, actor: str, paused: bool = True) -> Release:
        """Stop (or resume) sending the candidate, keeping the rollout's settings."""
        with write_tx(self._engine) as conn:
            release = self._locked(conn, name, tag)
            if release.candidate is None:
                raise Conflict(f"{name}/{tag} has no rollout to {'pause' if paused else 'resume'}")
            self._set(conn, name, tag, actor, paused=paused)
            self._audit.record(conn, actor, "template", name, "paused" if paused else "resumed", {"tag": tag, "candidate": release.candidate})
            return self._release_row(conn, name, tag)

    def rollback(self, name: str, tag: str, actor: str) -> Release:
        """During a rollout: drop the candidate (everyone back on the tag's version). Otherwise:
        the tag goes back to the version it served before its last promotion."""
        with write_tx(self._engine) as conn:
            release = self._locked(conn, name, tag)
            if release.candidate is not None:
                self._set(conn, name, tag, actor, candidate=None, percent=0, paused=False)
                detail = {"tag": tag, "dropped_candidate": release.candidate, "version": release.version}
            elif release.previous_version is not None:
                self._set(conn, name, tag, actor, version=release.previous_version, previous_version=None)
                detail = {"tag": tag, "version": release.previous_version, "was": release.version}
            else:
                raise Conflict(f"{name}/{tag} has nothing to roll back to")
            self._audit.record(conn, actor, "template", name, "rolled back", detail)
            return self._release_row(conn, name, tag)

    def _locked(self, conn: Connection, name: str, tag: str) -> Release:
        self._template_row(conn, name)
        r = template_releases.c
        conn.execute(select(r.tag).where(r.template == name, r.tag == tag).with_for_update())
        return self._release_row(conn, name, tag)

    def _set(self, conn: Connection, name: str, tag: str, actor: str, **values: Any) -> None:
        r = template_releases.c
        conn.execute(update(template_releases).where(r.template == name, r.tag == tag)
                     .values(updated_at=self._clock.now_ms(), updated_by=actor, **values))

    def _published(self, conn: Connection, name: str, version: int) -> None:
        if self._version_row(conn, name, version).state != "published":
            raise ValidationError("version", f"template {name} v{version} is a draft; publish it before releasing it")

    def _check_evaluated(self, conn: Connection, name: str, candidate: int, baseline: int) -> None:
        blocker = self._promotion_blocker(conn, name, candidate, baseline)
        if blocker is not None:
            raise Conflict(blocker)

    def _promotion_blocker(self, conn: Connection, name: str, candidate: int, baseline: int) -> str | None:
        """Why ``candidate`` may not replace ``baseline`` yet (None: it may)."""
        if not self.promotion_needs_evaluation:
            return None
        e = evaluations.c
        done = conn.execute(select(e.id).where(
            e.template == name, e.candidate == candidate, e.baseline == baseline, e.state == "done",
        ).limit(1)).first()
        if done is None:
            return (f"promoting {name} v{candidate} over v{baseline} needs a finished evaluation of the two first "
                    f"(POST /v1/templates/{name}/evaluations)")
        return None

    # --- evaluation sets -----------------------------------------------------------------------------

    def put_set(self, name: str, set_name: str, items: Sequence[dict[str, Any]], actor: str) -> dict[str, Any]:
        check_name(set_name, "set")
        with write_tx(self._engine) as conn:
            self._template_row(conn, name)
            s = evaluation_sets.c
            now = self._clock.now_ms()
            if conn.execute(select(s.name).where(s.template == name, s.name == set_name)).first():
                conn.execute(update(evaluation_sets).where(s.template == name, s.name == set_name)
                             .values(items=list(items), updated_at=now, updated_by=actor))
            else:
                conn.execute(insert(evaluation_sets).values(template=name, name=set_name, items=list(items), updated_at=now, updated_by=actor))
            self._audit.record(conn, actor, "template", name, "evaluation set", {"set": set_name, "items": len(items)})
        return self.get_set(name, set_name)

    def get_set(self, name: str, set_name: str) -> dict[str, Any]:
        s = evaluation_sets.c
        with read_tx(self._engine) as conn:
            row = conn.execute(select(evaluation_sets).where(s.template == name, s.name == set_name)).first()
            if row is None:
                self._template_row(conn, name)
                raise NotFound(f"template {name} has no evaluation set {set_name}")
        return {"template": name, "name": row.name, "items": row.items, "updated_at": row.updated_at, "updated_by": row.updated_by}


def _readable_by(tenant_id: str) -> Any:
    return or_(templates.c.tenant_id.is_(None), templates.c.tenant_id == tenant_id)


def _release(row: Any) -> Release:
    return Release(
        template=row.template, tag=row.tag, version=row.version, candidate=row.candidate, percent=row.percent,
        paused=bool(row.paused), previous_version=row.previous_version, updated_at=row.updated_at, updated_by=row.updated_by,
    )


def _version_view(row: Any) -> dict[str, Any]:
    return {
        "version": row.version, "state": row.state, "spec": row.spec, "content_hash": row.content_hash,
        "author": row.author, "note": row.note, "created_at": row.created_at, "published_at": row.published_at,
    }
