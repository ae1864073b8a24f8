"""Long operations (backup, restore, prompt generation, imports) run as background tasks whose
progress the page polls (GET /jobs/<id>)."""
from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

log = logging.getLogger("web_ui.jobs")


@dataclass
class Job:
    id: str
    kind: str
    owner: str
    """User who started it; only they (or an admin) may see it."""
    started: float
    progress: float = 0.0
    """0..1"""
    step: str = ""
    """Message key of the current step."""
    state: str = "running"
    """running | done | failed"""
    error: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    ended: float | None = None
    task: asyncio.Task | None = None

    def advance(self, progress: float, step: str = "") -> None:
        self.progress = max(self.progress, min(1.0, progress))
        if step:
            self.step = step

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state, "progress": round(self.progress, 3),
                "step": self.step, "error": self.error, "result": self.result}


class JobFailed(Exception):
    """Raised by a job body to fail with a message shown to the user."""


class Jobs:
    """At most `limit` remembered jobs; finished ones are forgotten oldest first."""

    def __init__(self, clock: Callable[[], float], limit: int = 50) -> None:
        self.clock = clock
        self.limit = limit
        self._jobs: dict[str, Job] = {}

    def start(self, kind: str, owner: str, body: Callable[[Job], Awaitable[dict[str, Any] | None]]) -> Job:
        job = Job(secrets.token_urlsafe(12), kind, owner, self.clock())
        self._jobs[job.id] = job
        self._trim()
        job.task = asyncio.get_running_loop().create_task(self._run(job, body))
        return job

    async def _run(self, job: Job, body: Callable[[Job], Awaitable[dict[str, Any] | None]]) -> None:
        try:
            result = await body(job)
            job.result = result or {}
            job.progress = 1.0
            job.state = "done"
        except JobFailed as e:
            job.state, job.error = "failed", str(e)
        except Exception as e:
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.state, job.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            job.ended = self.clock()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def running(self, kind: str) -> Job | None:
        return next((j for j in self._jobs.values() if j.kind == kind and j.state == "running"), None)

    def _trim(self) -> None:
        done = [j for j in self._jobs.values() if j.state != "running"]
        for j in done[: max(0, len(self._jobs) - self.limit)]:
            del self._jobs[j.id]
