"""How far a running video is and how long it may take: the bookkeeping after each frame of
``jobs.infer.run_video`` (progress in the record, the log and ``request.progress``; the
lease kept; the time limit)."""

from __future__ import annotations

import math
import time
from typing import Any

from app import lifecycle
from app.config import Settings
from app.errors import PosehookError
from app.services import Services
from app.store import requests as store


class VideoTimeLimitError(PosehookError):
    """A video took longer than its limit (job_timeout + its frames x video_frame_seconds)."""

    code = "timeout"


def fraction(done: int, total: int | None) -> dict[str, Any]:
    """``metrics.progress``: the total and the fraction are null while the length is unknown."""
    return {"frames_done": done, "frames_total": total,
            "fraction": round(done / total, 4) if total else None}


def time_limit(settings: Settings, total: int, done: int) -> float:
    """Return the seconds a video may take: POSEHOOK_JOB_TIMEOUT + its frames x
    POSEHOOK_VIDEO_FRAME_SECONDS, its frames the header's count or those decoded so far,
    whichever is more (a header that lists no length counts only the frames seen)."""
    return settings.job_timeout + max(total, done) * settings.video_frame_seconds


PROGRESS_LOG_SECONDS = 10.0
"""How often a video whose header lists no length logs how far it is (else: every tenth)."""


class Pace:
    """What happens after each frame of a video: ``metrics.progress`` at each log line and
    at most every half second between, a log line at each tenth of the frames (every
    PROGRESS_LOG_SECONDS when the header lists no length), ``request.progress`` at most
    once a second, and the time limit (``time_limit``), counted from ``started``."""

    def __init__(self, services: Services, request_id: str, total: int, started: float) -> None:
        self.services, self.request_id, self.total = services, request_id, total
        self.started, self.logged = started, started
        self.shown = self.announced = -math.inf

    def after(self, done: int) -> None:
        """Report frame ``done`` when due; raise VideoTimeLimitError past the time limit."""
        now = time.monotonic()
        log = (done % max(1, self.total // 10) == 0 if self.total
               else now - self.logged >= PROGRESS_LOG_SECONDS)
        if log or now - self.shown >= 0.5:
            self.shown, self.logged = now, now if log else self.logged
            progress(self.services, self.request_id, done,
                     max(self.total, done) if self.total else None, log)
            if now - self.announced >= 1.0:
                self.announced = now
                lifecycle.report_progress(self.services, self.request_id)
        limit = time_limit(self.services.settings, self.total, done)
        if now - self.started > limit:
            raise VideoTimeLimitError(
                f"the video took longer than its limit of {limit:g} s (POSEHOOK_JOB_TIMEOUT + "
                f"{max(self.total, done)} frames x POSEHOOK_VIDEO_FRAME_SECONDS)")


def progress(services: Services, request_id: str, done: int, total: int | None,
             log: bool) -> None:
    """Show how far a video is: ``metrics.progress``, and a log line when ``log``; and keep
    the lease while frames come (a worker that dies mid-video is noticed as soon as for a
    photo, however long the video). ``total`` is None when the header lists no length."""
    from app.store import tracking

    settings = services.settings
    tracking.extend_lease(services.redis, request_id,
                          time.time() + settings.job_timeout + settings.lease_grace)
    store.update(services.redis, request_id, metrics={"progress": fraction(done, total)})
    if log:
        store.add_log(services.redis, request_id, f"posed {done} of {total} frames" if total
                      else f"posed {done} frames (the video's header lists no length)")


