"""`v2l serve`'s web app: a FastAPI application with the JSON API under `/api/v1/` and one page at `/` that calls it.

Bounded work: at most `max_waiting` requests wait for the models (one computes at a time, `Service.lock`); one more is
answered 503 `{"error": "busy: ..."}` at once. A request that computes longer than `timeout_s` is answered 504 (its
computation finishes in the background; the models are never left half-used). Uploads over `max_upload_mb` are 413.
Bad input is a 4xx with `{"error": "one sentence"}`, the CLI's sentence; an unexpected failure is a 500 with one
sentence, never a traceback, and the server keeps answering.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from ..errors import V2LError
from .service import Service

OPERATIONS = ("tokenize", "words", "reconstruct", "classify", "caption", "vqa", "denoise", "restore", "seed-caption")
PAGE = Path(__file__).resolve().parent.parent / "resources" / "serve" / "index.html"


class Busy(Exception):
    pass


class Gate:
    """At most `max_waiting` requests inside (computing or waiting for the lock); beyond that, `Busy` at once."""

    def __init__(self, max_waiting: int):
        self.max_waiting, self.inside, self.served, self.refused = max_waiting, 0, 0, 0

    def enter(self) -> None:
        if self.inside >= self.max_waiting:
            self.refused += 1
            raise Busy(f"busy: {self.inside} requests are being served or waiting; try again in a moment.")
        self.inside += 1

    def leave(self) -> None:
        self.inside -= 1
        self.served += 1


def create_app(
    service: Service | None = None, max_waiting: int = 8, timeout_s: float = 300.0, max_upload_mb: float = 20.0
):
    from .. import __version__

    service = service or Service()
    gate = Gate(max_waiting)
    app = FastAPI(title="v2l", version=__version__, description="V2L: images as words of a frozen LLM's vocabulary.")
    app.state.service, app.state.gate = service, gate
    limit = int(max_upload_mb * 2**20)

    def error(status: int, message: str):
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def page():
        return PAGE.read_text()

    @app.get("/api/v1/health")
    def health():
        return {
            "status": "ok",
            "version": __version__,
            **service.describe(),
            "busy": gate.inside,
            "served": gate.served,
            "refused": gate.refused,
        }

    async def save_upload(upload, folder: Path, name: str, what: str) -> Path:
        if not hasattr(upload, "read"):
            raise V2LError(f"{what} must be an uploaded file (multipart field), not text.")
        data = await upload.read(limit + 1)
        label = f"{what} {upload.filename}" if upload.filename else what
        if len(data) > limit:
            raise TooLarge(f"{label} is over the upload limit of {max_upload_mb:g} MB.")
        if not data:
            raise V2LError(f"{label} is empty: upload an image file.")
        path = folder / name
        path.write_bytes(data)
        return path

    async def run(request: Request, op: str):
        form = await request.form()
        tmp = Path(tempfile.mkdtemp(prefix="v2l-serve-"))
        try:
            if "image" not in form:
                raise V2LError("The image is missing: send it as the multipart field `image`.")
            image = await save_upload(form["image"], tmp, "image", "The image")
            from ..data.images import load_image

            load_image(image, name=getattr(form["image"], "filename", None) or "upload")  # the CLI's checks, now
            call = await _call(op, form, image, tmp, save_upload)
            gate.enter()
            try:
                return await asyncio.wait_for(asyncio.to_thread(call), timeout=timeout_s)
            finally:
                gate.leave()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    async def _call(op, form, image, tmp, save):
        get = lambda k, d=None: str(form.get(k, d)) if form.get(k) is not None else d  # noqa: E731
        if op == "tokenize":
            return lambda: service.tokenize(image)
        if op == "words":
            top = _int(get("top", "10"), "top", 1, 100)
            return lambda: service.words(image, top)
        if op == "reconstruct":
            return lambda: service.reconstruct(image)
        if op == "classify":
            support: dict[str, list[Path]] = {}
            labels = [x.strip() for x in (get("classes", "") or "").split(",") if x.strip()]
            for label in labels:
                support[label] = []
            for key, value in form.multi_items():
                if key.startswith("class:"):
                    label = key[len("class:") :].strip()
                    if not label:
                        raise V2LError("A class has an empty name: name each class.")
                    support.setdefault(label, [])
                    k = len(support[label])
                    support[label].append(await save(value, tmp, f"s{len(support)}-{k}", f"Example image of {label!r}"))
            if get("episode") == "heldout":
                if support:
                    raise V2LError("Pass either example classes or episode=heldout, not both.")
                support = await asyncio.to_thread(service.heldout_episode, tmp)
            return lambda: service.classify(image, support, get("rule", "rank"))
        if op == "caption":
            return lambda: service.caption(image)
        if op == "vqa":
            q = get("question")
            if q is None:
                raise V2LError("The question is missing: send it as the form field `question`.")
            if len(q) > 1000:
                raise V2LError(f"The question is {len(q):,} characters long: ask in at most 1,000.")
            return lambda: service.vqa(image, q)
        if op == "denoise":
            return lambda: service.denoise(image, get("task", "inpaint"))
        if op == "restore":
            try:
                ratio = float(get("mask", "0.3"))
            except ValueError:
                raise V2LError(f"mask {get('mask')!r} is not a number: use a fraction such as 0.3.") from None
            return lambda: service.restore(image, ratio)
        if op == "seed-caption":
            return lambda: service.seed_caption(image)
        raise V2LError(f"Unknown operation {op!r}: use one of {', '.join(OPERATIONS)}.")

    for op in OPERATIONS:

        async def endpoint(request: Request, op=op):
            try:
                return await run(request, op)
            except TooLarge as e:
                return error(413, str(e))
            except Busy as e:
                return error(503, str(e))
            except TimeoutError:
                return error(504, f"{op} took longer than the server's limit of {timeout_s:g} s; try a smaller job.")
            except V2LError as e:
                return error(400, str(e).splitlines()[0])
            except Exception as e:  # noqa: BLE001 - one sentence, never a traceback; the server keeps answering
                return error(500, f"{op} failed ({type(e).__name__}): {str(e).splitlines()[0][:200] if str(e) else ''}")

        app.post(f"/api/v1/{op}", name=op, summary=f"{op} an uploaded image (multipart field `image`)")(endpoint)
    return app


class TooLarge(V2LError):
    pass


def _int(text: str, name: str, low: int, high: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise V2LError(f"{name} {text!r} is not a whole number: use {low} to {high}.") from None
    if not low <= v <= high:
        raise V2LError(f"{name} {v} is out of range: use {low} to {high}.")
    return v
