"""The web app's JSON routes (`/api/...`) and the export downloads: uploads, previews, starting, stopping and
resuming runs, their state, "Try it" predictions and exports. Training and export run as `bertkit` commands
in the workspace's job queue."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from bertkit.errors import DataError
from bertkit.ui.preview import preview
from bertkit.ui.runs import build_config, check_data, run_state, runs_table
from bertkit.ui.state import UI, error
from bertkit.ui.workspace import DATA_SUFFIXES, EXPORTS, NAME

__all__ = ["router"]

router = APIRouter()


async def _json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object body; anything else is a DataError (a 422 in the form, not a 500)."""
    try:
        body = await request.json()
    except ValueError:
        raise DataError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise DataError("the request body must be a JSON object")
    return body


class _TooLarge(Exception):
    pass


@router.put("/api/upload")
async def upload(request: Request, ui: UI):
    raw = request.query_params.get("name") or ""
    name = Path(raw.replace("\\", "/")).name
    if not NAME.match(name) or not name.lower().endswith(DATA_SUFFIXES):
        return error(422, f"{raw!r}: upload a data file (.csv, .tsv, .jsonl, .json, .parquet, .conll, .txt, "
                     "optionally .gz) whose name is letters, digits, '.', '_' and '-'")
    length = request.headers.get("content-length", "")
    declared = int(length) if length.isdigit() else 0  # a missing or malformed length: the body counts
    if declared > ui.upload_limit:
        return error(413, f"{name}: {declared / 2**20:.1f} MB is over the upload limit of "
                     f"{ui.max_upload_mb:g} MB (bertkit ui --max-upload-mb)")
    target = ui.ws.root / "uploads" / name
    if target.is_dir():
        return error(409, f"uploads/{name} is a folder; upload under another name")
    tmp, fd = ui.ws.upload_target(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > ui.upload_limit:
                    raise _TooLarge()
                fh.write(chunk)
        os.replace(tmp, target)  # a symlink planted at the target is replaced, not written through
    except _TooLarge:
        return error(413, f"{name}: over the upload limit of {ui.max_upload_mb:g} MB")
    finally:
        tmp.unlink(missing_ok=True)
    return {"file": ui.ws.rel(target), "bytes": size}


@router.get("/api/files")
def files(ui: UI):
    return {"files": ui.ws.data_files(), "models": ui.ws.models()}


@router.get("/api/preview")
def preview_file(file: str, ui: UI):
    return preview(ui.ws.inside(file))


@router.post("/api/runs")
async def start(request: Request, ui: UI):
    import yaml

    config = build_config(ui.ws, await _json_object(request))
    n = check_data(config)
    config_file = ui.ws.jobs.folder / f"{Path(config.out).name}-{int(time.time())}.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    job = ui.ws.jobs.submit(["train", str(config_file)], Path(config.out))
    return {"run": Path(config.out).name, "job": job["id"], "examples": n}


@router.get("/api/runs")
def runs(ui: UI):
    return {"runs": runs_table(ui.ws)}


@router.get("/api/run/{name}")
def state(name: str, ui: UI):
    return run_state(ui.ws, name)


@router.post("/api/run/{name}/stop")
def stop(name: str, ui: UI):
    job = ui.ws.jobs.for_run(ui.ws.run(name))
    if not job or job["state"] not in ("queued", "running"):
        return error(409, f"{name}: no job of this run is queued or running")
    return {"job": ui.ws.jobs.stop(job["id"])}


@router.post("/api/run/{name}/resume")
def resume(name: str, ui: UI):
    from bertkit.run_dir import RunDir

    path = ui.ws.run(name)
    job = ui.ws.jobs.for_run(path)
    if job and job["state"] in ("queued", "running"):
        return error(409, f"{name}: a job of this run is {job['state']} already")
    if not RunDir(path).exists():
        return error(409, f"{name}: nothing to resume (no config.yaml)")
    if RunDir(path).status().get("status") == "completed":
        return error(409, f"{name}: the run is complete; start a new one to train more")
    return {"job": ui.ws.jobs.submit(["train", "--out", str(path), "--resume"], path)["id"]}


@router.post("/api/run/{name}/predict")
async def predict(name: str, request: Request, ui: UI):
    from bertkit.inference.predictor import Predictor
    from bertkit.run_dir import RunDir

    path = ui.ws.run(name)
    inputs = (await _json_object(request)).get("inputs")
    if not isinstance(inputs, list) or not inputs or len(inputs) > 16:
        return error(422, "send {\"inputs\": [...]}, 1 to 16 inputs")
    status = RunDir(path).status().get("status") if RunDir(path).exists() else None
    if status != "completed":
        return error(409, f"{name}: the run is {status or 'not started'}; try it once it completes")
    stamp, loaded = (path / "results.json").stat().st_mtime, ui.predictors
    if name not in loaded or loaded[name][0] != stamp:
        if len(loaded) >= 2:
            loaded.pop(next(iter(loaded)))
        loaded[name] = (stamp, Predictor.from_path(path))
    return {"predictions": loaded[name][1].predict(inputs)}


@router.post("/api/run/{name}/export")
async def export(name: str, request: Request, ui: UI):
    from bertkit.run_dir import RunDir

    path = ui.ws.run(name)
    fmt = (await _json_object(request)).get("format")
    if fmt not in ("hf", "onnx", "int8"):
        return error(422, "format: hf, onnx or int8")
    if RunDir(path).status().get("status") != "completed":
        return error(409, f"{name}: export a completed run")
    out = ui.ws.root / EXPORTS / f"{name}-{fmt}-{int(time.time())}"
    args = ["export", str(path), "--out", str(out), "--format", "hf" if fmt == "hf" else "onnx"]
    args += ["--quantize", "int8"] if fmt == "int8" else []
    return {"job": ui.ws.jobs.submit(args, path, kind="export", format=fmt, out=str(out))["id"]}


@router.get("/download/{job_id}.zip")
def download(job_id: str, ui: UI):
    try:
        job = ui.ws.jobs.get(job_id)
    except KeyError:
        return Response(status_code=404)
    out = Path(job.get("out") or "")
    if job["kind"] != "export" or job["state"] != "done" or not out.is_dir():
        return Response(status_code=404)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(out.rglob("*")):
            if f.is_file():
                zf.write(f, f"{out.name}/{f.relative_to(out).as_posix()}")
    return Response(buffer.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": f"attachment; filename={out.name}.zip"})
