"""Evaluations: a candidate template version against a baseline on a named set of variable sets.

Starting one submits, for every item of the set, the baseline and the candidate with the same
fixed seed (``seed + 4·i``) on the batch lane, charged to the caller like any tasks. Once every
task has ended, each pair gets a perceptual difference score of its grids (``media/compare.py``),
the evaluation a summary, and a contact sheet: a PNG in storage and an HTML page served by
pixelmill at ``/v1/templates/{name}/evaluations/{id}/sheet`` (the id is unguessable: the page is
linkable without a key, like a presigned URL). Fixed seeds make every score reproducible."""

from __future__ import annotations

import html
import io
import secrets
import statistics
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import Engine, insert, select, update

from pixelmill.auth.keys import Principal
from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx, write_tx
from pixelmill.db.schema import evaluations
from pixelmill.exceptions import NotFound, ValidationError
from pixelmill.media.compare import difference
from pixelmill.observe.audit import AuditLog
from pixelmill.prompts.params import MAX_SEED
from pixelmill.queue.store import TaskStore
from pixelmill.storage.base import Storage
from pixelmill.submit.service import TaskService
from pixelmill.tasks.record import Task
from pixelmill.tasks.requests import ImagineRequest
from pixelmill.tasks.status import TaskStatus
from pixelmill.templates.store import TemplateStore

MAX_ITEMS = 200
#: Contact sheet geometry (PNG): a text column, then baseline and candidate grids side by side.
_TEXT_W, _GRID_W, _PAD = 300, 320, 16


class Evaluations:
    def __init__(
        self, engine: Engine, clock: Clock, templates: TemplateStore, tasks: TaskStore, service: TaskService,
        storage: Storage, audit: AuditLog,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._templates = templates
        self._tasks = tasks
        self._service = service
        self._storage = storage
        self._audit = audit

    def start(self, principal: Principal, name: str, set_name: str, baseline: int, candidate: int, seed: int = 0) -> dict[str, Any]:
        items = self._templates.get_set(name, set_name)["items"]
        if not 1 <= len(items) <= MAX_ITEMS:
            raise ValidationError("set", f"an evaluation set needs 1-{MAX_ITEMS} items, {set_name} has {len(items)}")
        if baseline == candidate:
            raise ValidationError("candidate", "the candidate and the baseline are the same version")
        for field, version in (("baseline", baseline), ("candidate", candidate)):
            try:
                self._templates.spec(name, version)
            except ValidationError as exc:
                raise ValidationError(field, exc.rule) from None
        plan = []
        for i, variables in enumerate(items):
            for version in (baseline, candidate):
                req = ImagineRequest(template=name, template_version=version, variables=variables,
                                     seed=(seed + 4 * i) % (MAX_SEED + 1), lane="batch")
                try:
                    plan += self._service.plan_imagine(principal, req, (), allow_cache=False, trusted=("seed",))
                except ValidationError as exc:
                    raise exc.within(f"items[{i}]") from None
        made = self._service.admission.accept(plan, principal, None, submissions=1)
        pairs = [
            {"variables": items[i], "baseline_task": made[2 * i].id, "candidate_task": made[2 * i + 1].id, "score": None}
            for i in range(len(items))
        ]
        evaluation_id = "ev_" + secrets.token_hex(16)
        with write_tx(self._engine) as conn:
            conn.execute(insert(evaluations).values(
                id=evaluation_id, template=name, set_name=set_name, baseline=baseline, candidate=candidate, seed=seed,
                state="running", pairs=pairs, created_at=self._clock.now_ms(), created_by=principal.key_id,
            ))
            self._audit.record(conn, principal.key_id, "template", name, "evaluation",
                               {"evaluation": evaluation_id, "set": set_name, "baseline": baseline, "candidate": candidate})
        return self.get(name, evaluation_id)

    # --- reading, and finishing when the tasks have ---------------------------------------------

    def get(self, name: str, evaluation_id: str) -> dict[str, Any]:
        """The evaluation; finished first if all its tasks have ended since the last look."""
        row = self._row(name, evaluation_id)
        if row.state == "running":
            self.advance(row)
            row = self._row(name, evaluation_id)
        return _view(row)

    def peek(self, name: str, evaluation_id: str) -> dict[str, Any]:
        """The evaluation as stored, without finishing it (a key-less page must not do work)."""
        return _view(self._row(name, evaluation_id))

    def list_for(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        e = evaluations.c
        with read_tx(self._engine) as conn:
            rows = conn.execute(select(evaluations).where(e.template == name).order_by(e.created_at.desc()).limit(limit)).all()
        return [_view(r) for r in rows]

    def advance_all(self) -> int:
        """Finish every running evaluation whose tasks have all ended (a scheduler chore)."""
        with read_tx(self._engine) as conn:
            rows = conn.execute(select(evaluations).where(evaluations.c.state == "running")).all()
        return sum(self.advance(r) for r in rows)

    def advance(self, row: Any) -> bool:
        tasks: dict[str, Task] = {}
        for pair in row.pairs:
            for key in ("baseline_task", "candidate_task"):
                task = self._tasks.get(pair[key])
                if task is None or not task.status.is_terminal:
                    return False
                tasks[pair[key]] = task
        pairs = [self._score(pair, tasks[pair["baseline_task"]], tasks[pair["candidate_task"]]) for pair in row.pairs]
        scores = [p["score"] for p in pairs if p["score"] is not None]
        summary = {
            "pairs": len(pairs), "scored": len(scores), "failed": len(pairs) - len(scores),
            "mean": round(statistics.fmean(scores), 4) if scores else None,
            "median": round(statistics.median(scores), 4) if scores else None,
            "max": max(scores) if scores else None, "min": min(scores) if scores else None,
        }
        sheet = self._sheet_png(row, pairs, summary)
        e = evaluations.c
        with write_tx(self._engine) as conn:
            done = conn.execute(update(evaluations).where(e.id == row.id, e.state == "running").values(
                state="done", pairs=pairs, summary=summary, sheet_key=sheet, finished_at=self._clock.now_ms(),
            ))
        return done.rowcount == 1

    def _score(self, pair: dict[str, Any], base: Task, cand: Task) -> dict[str, Any]:
        out = dict(pair)
        for side, task in (("baseline", base), ("candidate", cand)):
            out[f"{side}_prompt"] = task.prompt
            out[f"{side}_grid"] = task.result.grid_key if task.result else None
        if base.status is not TaskStatus.SUCCESS or cand.status is not TaskStatus.SUCCESS or not (out["baseline_grid"] and out["candidate_grid"]):
            out["error"] = base.fail_reason or cand.fail_reason or "a task did not succeed"
            return out
        out["score"] = difference(self._image(out["baseline_grid"]), self._image(out["candidate_grid"]))
        return out

    def _image(self, key: str) -> Image.Image:
        with Image.open(io.BytesIO(self._storage.get(key))) as im:
            return im.convert("RGB")

    def _row(self, name: str, evaluation_id: str) -> Any:
        e = evaluations.c
        with read_tx(self._engine) as conn:
            row = conn.execute(select(evaluations).where(e.id == evaluation_id, e.template == name)).first()
        if row is None:
            raise NotFound(f"template {name} has no evaluation {evaluation_id}")
        return row

    # --- the contact sheet -----------------------------------------------------------------------

    def _sheet_png(self, row: Any, pairs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
        font = ImageFont.load_default(size=14)
        big = ImageFont.load_default(size=20)
        grids = [(self._thumb(p.get("baseline_grid")), self._thumb(p.get("candidate_grid"))) for p in pairs]
        row_h = max([_GRID_W] + [max(b.height, c.height) for b, c in grids]) + _PAD
        width = _TEXT_W + 2 * (_GRID_W + _PAD) + _PAD
        head = 90
        sheet = Image.new("RGB", (width, head + row_h * len(pairs) + _PAD), (250, 250, 247))
        draw = ImageDraw.Draw(sheet)
        draw.text((_PAD, 12), f"{row.template}: v{row.baseline} (baseline) vs v{row.candidate} (candidate), set {row.set_name}", fill=(20, 20, 20), font=big)
        draw.text((_PAD, 44), _summary_line(summary), fill=(60, 60, 60), font=font)
        x_base, x_cand = _TEXT_W, _TEXT_W + _GRID_W + _PAD
        draw.text((x_base, 68), f"baseline v{row.baseline}", fill=(60, 60, 60), font=font)
        draw.text((x_cand, 68), f"candidate v{row.candidate}", fill=(60, 60, 60), font=font)
        for i, (pair, (b, c)) in enumerate(zip(pairs, grids, strict=True)):
            y = head + i * row_h
            text = "\n".join(f"{k}: {v}" for k, v in pair["variables"].items())
            score = f"difference {pair['score']:.4f}" if pair.get("score") is not None else f"no score: {pair.get('error', '')}"[:60]
            draw.multiline_text((_PAD, y + 4), f"#{i + 1}\n{text}\n\n{score}", fill=(20, 20, 20), font=font, spacing=4)
            sheet.paste(b, (x_base, y))
            sheet.paste(c, (x_cand, y))
        buf = io.BytesIO()
        sheet.save(buf, "PNG", optimize=True)
        return self._storage.put(buf.getvalue(), "png").key

    def _thumb(self, key: str | None) -> Image.Image:
        if not key:
            return Image.new("RGB", (_GRID_W, _GRID_W // 2), (200, 200, 200))
        image = self._image(key)
        return image.resize((_GRID_W, max(1, round(_GRID_W * image.height / image.width))), Image.Resampling.LANCZOS)


def _summary_line(summary: dict[str, Any]) -> str:
    if summary.get("mean") is None:
        return f"{summary['pairs']} pairs, none scored"
    return (f"{summary['pairs']} pairs, {summary['scored']} scored, {summary['failed']} failed; difference mean {summary['mean']:.4f}, "
            f"median {summary['median']:.4f}, min {summary['min']:.4f}, max {summary['max']:.4f} (0 = same picture)")


def _view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "template": row.template, "set": row.set_name, "baseline": row.baseline, "candidate": row.candidate,
        "seed": row.seed, "state": row.state, "pairs": row.pairs, "summary": row.summary, "sheet_key": row.sheet_key,
        "created_at": row.created_at, "created_by": row.created_by, "finished_at": row.finished_at,
    }


def sheet_html(evaluation: dict[str, Any], url: Callable[[str], str], page_url: str) -> str:
    """The contact sheet page: summary, then one row per item with both grids and the score."""
    e = evaluation
    title = f"{e['template']}: v{e['baseline']} vs v{e['candidate']}"
    esc = html.escape
    rows = []
    for i, p in enumerate(e["pairs"], 1):
        cells = []
        for side in ("baseline", "candidate"):
            key = p.get(f"{side}_grid")
            img = f'<img src="{esc(url(key))}" alt="{side} grid" loading="lazy">' if key else '<div class="none">not finished</div>'
            cells.append(f'<td>{img}<div class="prompt">{esc(p.get(f"{side}_prompt") or "")}</div>'
                         f'<div class="task">task {esc(p[f"{side}_task"])}</div></td>')
        score = f"{p['score']:.4f}" if p.get("score") is not None else esc(p.get("error") or "pending")
        variables = "".join(f"<div><b>{esc(str(k))}</b>: {esc(str(v))}</div>" for k, v in p["variables"].items())
        rows.append(f'<tr><td class="vars"><div class="n">#{i}</div>{variables}</td>{"".join(cells)}<td class="score">{score}</td></tr>')
    summary = esc(_summary_line(e["summary"])) if e["summary"] else "running: the page fills in when every task has ended"
    png = f'<a href="{esc(url(e["sheet_key"]))}">PNG</a> · ' if e["sheet_key"] else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fafaf7; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} .meta {{ color: #555; margin-bottom: 16px; }}
table {{ border-collapse: collapse; }} th, td {{ border-bottom: 1px solid #ddd; padding: 8px; vertical-align: top; text-align: left; }}
img {{ width: 320px; display: block; }} .prompt {{ max-width: 320px; color: #444; font-size: 12px; margin-top: 4px; }}
.task {{ color: #888; font-size: 11px; }} .vars {{ width: 200px; }} .n {{ color: #888; }}
.score {{ font: 600 16px ui-monospace, monospace; }} .none {{ width: 320px; height: 160px; background: #ddd; }}
</style></head><body>
<h1>{esc(title)}</h1>
<div class="meta">evaluation {esc(e['id'])} · set {esc(e['set'])} · seed {e['seed']} · {esc(e['state'])} · {png}<a href="{esc(page_url)}">this page</a></div>
<div class="meta">{summary}</div>
<table><tr><th>variables</th><th>baseline v{e['baseline']}</th><th>candidate v{e['candidate']}</th><th>difference</th></tr>
{''.join(rows)}
</table></body></html>
"""
