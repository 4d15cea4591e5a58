"""`pan serve`: a local web page over the same Predictor that `pan infer` uses.

The API is two routes: GET /api/models lists what can run, POST /api/run takes a multipart
form (image, optional mask, task, optional model) and answers with the result as PNG, or a
4xx/503 with {"error": "..."}. Models are known by id only: a request names an id from the
list, never a path, so nothing a request sends reaches the file system. Every model is loaded
(and its --tile checked) before the server starts.

Limits, so that no request can hold the server: the body is counted as it arrives (a chunked
upload cannot pass --max-upload); an image over --max-pixels is refused; inferences run one at
a time in each of two lanes (small images, large ones), each with a bounded queue (503 when
full), so a small request is answered within seconds while large ones wait; a request whose
client left while it waited is dropped. Host and Origin are checked: only the names the
server was bound to, and no cross-origin API call (DNS rebinding, a page on another site).
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import torch
from PIL import Image

from pan_cli.datasets.holes import check_mask, decode_mask
from pan_cli.datasets.images import decode_image
from pan_cli.errors import PanError
from pan_cli.infer.predictor import Predictor
from pan_cli.store.checkpoint import PRETRAINED
from pan_cli.tasks import TASKS

MAX_UPLOAD = 50 * 2**20  # bytes per request
MAX_PIXELS = 16 * 2**20  # per image, unless --max-pixels says otherwise (and what memory allows)
SMALL_PIXELS = 2**20  # images up to this many pixels run in the small lane
QUEUE = 4  # requests that may wait in each lane before the next gets 503
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Model:
    id: str  # what a request names
    task: str
    label: str  # what the page shows
    predictor: Predictor  # loaded before the server starts; never sent


def find_models(checkpoints: list[Path], device: torch.device, tile: int | None = None, runs: Path = Path("runs"),
                warn: Callable[[str], None] = lambda message: None) -> list[Model]:
    """The given checkpoints (any problem stops the server), then each task's latest run under
    `runs` (a damaged one is reported and left out), then the shipped models; each loaded."""
    candidates = [(p, p.name, True) for p in checkpoints]
    candidates += [(runs / task / "latest.pt", f"{runs / task}", False) for task in TASKS
                   if (runs / task / "latest.pt").exists()]
    candidates += [(path, "shipped model", True) for path in PRETRAINED.values()]
    models: list[Model] = []
    for path, where, required in candidates:
        try:
            predictor = Predictor.from_checkpoint(path, None, device, tile)
        except PanError as exc:
            if required:
                raise
            warn(f"leaving out {path}: {exc}")
            continue
        config = predictor.config
        label = f"{config.task}: {where} ({config.generator}, step {predictor.step})"
        models.append(Model(f"m{len(models)}", config.task, label, predictor))
    return models


def _error(message: str, status: int = 400):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


class UploadTooLarge(Exception):
    """The body passed the upload limit while it arrived."""


def host_name(value: str) -> str:
    """'example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'."""
    if value.startswith("["):
        return value[1: value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(bound: str) -> frozenset[str] | None:
    """The Host names a request may use: the bound name (and every loopback name when it is a
    loopback address); None (any) when bound to every address (0.0.0.0 or ::)."""
    if bound in ("0.0.0.0", "::", "[::]", ""):
        return None
    names = {bound.strip("[]").lower()}
    return frozenset(names | set(LOOPBACK_NAMES)) if is_loopback(bound) else frozenset(names)


class Guard:
    """ASGI middleware: refuses a foreign Host (421) and a cross-origin call of the API (403),
    and counts the body as it arrives (UploadTooLarge past `max_upload`)."""

    def __init__(self, app, hosts: frozenset[str] | None, max_upload: int):
        self.app, self.hosts, self.max_upload = app, hosts, max_upload

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.hosts is not None and host_name(host).lower() not in self.hosts:
            return await _error(f"this server does not answer for host {host[:80]!r}", 421)(scope, receive, send)
        origin = headers.get("origin")
        if scope["path"].startswith("/api/") and origin is not None and (
                origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
            return await _error("cross-origin requests are refused", 403)(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_upload:
                raise UploadTooLarge
            return message

        await self.app(scope, counted, send)


class Lane:
    """One inference at a time, and at most `queue` requests waiting for it."""

    def __init__(self, queue: int):
        self.lock, self.queue, self.waiting = asyncio.Lock(), queue, 0


def create_app(models: list[Model], max_upload: int = MAX_UPLOAD, max_pixels: int = MAX_PIXELS,
               queue: int = QUEUE, hosts: frozenset[str] | None = allowed_hosts("127.0.0.1")):
    """The Starlette app: the page under /, the API under /api, behind the Guard."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    by_id = {m.id: m for m in models}
    lanes = {"small": Lane(queue), "large": Lane(queue)}
    limit_mb = f"{max_upload / 2**20:g} MB"

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse([{"id": m.id, "task": m.task, "label": m.label,
                              "mask": m.predictor.inpaints} for m in models])

    async def run(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > max_upload:
            return _error(f"the upload is over the limit of {limit_mb}", 413)
        try:
            form = await request.form(max_files=2, max_fields=4)
            task, model_id = str(form.get("task") or ""), str(form.get("model") or "")
            upload, mask_upload = form.get("image"), form.get("mask")
            data = await upload.read() if upload is not None and not isinstance(upload, str) else None
            sent_mask = mask_upload is not None and not isinstance(mask_upload, str)
            mask_data = await mask_upload.read() if sent_mask else None
        except UploadTooLarge:
            return _error(f"the upload is over the limit of {limit_mb}", 413)
        except Exception as exc:  # noqa: BLE001 - a malformed body is the client's error
            return _error(f"not a multipart form: {exc}")
        if task not in TASKS:
            return _error(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        candidates = [m for m in models if m.task == task]
        if model_id:
            if model_id not in by_id or by_id[model_id].task != task:
                return _error(f"no model {model_id!r} for {task} (GET /api/models lists them)", 404)
            model = by_id[model_id]
        elif candidates:
            model = candidates[0]
        else:
            return _error(f"no model for {task}: train one (pan train {task}) or give --checkpoint", 404)
        if data is None:
            return _error("no image: send the file in the 'image' field")
        net = model.predictor
        limit = min(max_pixels, net.max_pixels())
        try:
            image = decode_image(io.BytesIO(data), "the image", min(net.config.in_channels, 3), limit)
            mask = None
            if net.inpaints and mask_data is not None:
                mask = decode_mask(io.BytesIO(mask_data), "the mask", limit)
                check_mask(mask, image, "the mask", "the image")
        except PanError as exc:
            return _error(str(exc))
        lane = lanes["small" if image.shape[1] * image.shape[2] <= SMALL_PIXELS else "large"]
        if lane.lock.locked() and lane.waiting >= lane.queue:  # (a free lane takes it whatever --queue says)
            return _error(f"busy: {lane.waiting} requests of this size are waiting; try again shortly", 503)
        lane.waiting += 1
        try:
            await lane.lock.acquire()
        finally:
            lane.waiting -= 1
        try:
            if await request.is_disconnected():  # the client left while it waited: drop it
                return Response(status_code=499)
            result = await run_in_threadpool(net.predict, image, mask)
        except RuntimeError as exc:
            if "memory" in str(exc) or "alloc" in str(exc):
                return _error("the image needs more memory than is free", 413)
            raise
        finally:
            lane.lock.release()
        buffer = io.BytesIO()
        Image.fromarray(result.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png")

    static = resources.files("pan_cli") / "static"
    app = Starlette(routes=[
        Route("/api/models", list_models),
        Route("/api/run", run, methods=["POST"]),
        Mount("/", app=StaticFiles(directory=str(static), html=True)),
    ])
    return Guard(app, hosts, max_upload)
