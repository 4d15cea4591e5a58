"""`pan serve`: a local web page over the same Predictor that `pan infer` uses.

The API is two routes: GET /api/models lists what can run, POST /api/run takes a multipart
form (image, optional mask, task, optional model) and answers with the result as PNG, or a
4xx with {"error": "..."}. Models are known by id only: a request names an id from the list,
never a path, so nothing a request sends reaches the file system. Uploads are decoded in
memory with the rules of `pan infer` (size limit, decompression bombs, non-images), and one
inference runs at a time, in a worker thread, so the event loop keeps answering.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from PIL import Image

from pan_cli.checkpoint import PRETRAINED, load_checkpoint
from pan_cli.datasets.images import decode_image
from pan_cli.errors import PanError
from pan_cli.predictor import Predictor
from pan_cli.tasks import TASKS

MAX_UPLOAD = 50 * 2**20  # bytes per request


@dataclass(frozen=True)
class Model:
    id: str  # what a request names
    task: str
    label: str  # what the page shows
    path: Path  # server side only, never sent


def find_models(checkpoints: list[Path], runs: Path = Path("runs")) -> list[Model]:
    """The given checkpoints, then each task's latest run under `runs`, then the shipped models."""
    models: list[Model] = []
    candidates = [(p, p.name) for p in checkpoints]
    candidates += [(runs / task / "latest.pt", f"{runs / task}") for task in TASKS
                   if (runs / task / "latest.pt").exists()]
    candidates += [(path, "shipped model") for path in PRETRAINED.values()]
    for path, where in candidates:
        state = load_checkpoint(path)
        config = state["config"]
        label = f"{config.task}: {where} ({config.generator}, step {state.get('step', '?')})"
        models.append(Model(f"m{len(models)}", config.task, label, path))
    return models


def _error(message: str, status: int = 400):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


def create_app(models: list[Model], device: torch.device, max_upload: int = MAX_UPLOAD,
               tile: int | None = None):
    """The Starlette app: the page under /, the API under /api."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    by_id = {m.id: m for m in models}
    loaded: dict[str, Predictor] = {}
    one_at_a_time = asyncio.Lock()

    def predictor(model: Model) -> Predictor:
        if model.id not in loaded:
            loaded[model.id] = Predictor.from_checkpoint(model.path, model.task, device, tile)
        return loaded[model.id]

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse([{"id": m.id, "task": m.task, "label": m.label,
                              "mask": TASKS[m.task].synthesizer == "holes"} for m in models])

    async def run(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > max_upload:
            return _error(f"the upload is over the limit of {max_upload // 2**20} MB", 413)
        try:
            form = await request.form(max_files=2, max_fields=4)
        except Exception as exc:  # noqa: BLE001 - a malformed body is the client's error
            return _error(f"not a multipart form: {exc}")
        task, model_id = str(form.get("task") or ""), str(form.get("model") or "")
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
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            return _error("no image: send the file in the 'image' field")
        data = await upload.read()
        if len(data) > max_upload:
            return _error(f"the image is over the limit of {max_upload // 2**20} MB", 413)
        net = predictor(model)
        limit = net.max_pixels()
        try:
            image = decode_image(io.BytesIO(data), "the image", min(net.config.in_channels, 3), limit)
            mask = None
            mask_upload = form.get("mask")
            if net.inpaints and mask_upload is not None and not isinstance(mask_upload, str):
                mask = decode_image(io.BytesIO(await mask_upload.read()), "the mask", 1, limit)[0] > 127
                if mask.shape != image.shape[1:]:
                    return _error(f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                                  f"{image.shape[2]}x{image.shape[1]}")
                if not mask.any():
                    return _error("the mask is empty: paint over what to fill")
        except PanError as exc:
            return _error(str(exc))
        async with one_at_a_time:
            try:
                result = await run_in_threadpool(net.predict, image, mask)
            except RuntimeError as exc:
                if "memory" in str(exc) or "alloc" in str(exc):
                    return _error("the image needs more memory than is free", 413)
                raise
        buffer = io.BytesIO()
        Image.fromarray(result.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png")

    static = resources.files("pan_cli") / "static"
    return Starlette(routes=[
        Route("/api/models", list_models),
        Route("/api/run", run, methods=["POST"]),
        Mount("/", app=StaticFiles(directory=str(static), html=True)),
    ])
