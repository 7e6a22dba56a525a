"""The HTTP service: FastAPI routes over one `Predictor`, with dynamic batching, limits and an API key.

    POST /v1/predict   {"inputs": [...]} -> {"predictions": [...]}, in input order
    GET  /v1/model     task, labels, base model, lineage, dev metrics, precision, batching, limits, the
                       input schema (local paths cut to their last name)
    GET  /health       {"status": "ok"} once the model is loaded
    GET  /docs, /openapi.json (the served model's input schema in /v1/predict's body, every error documented)

Errors are JSON `{"error": {"code", "message", ...}}`: 401 (API key), 405 (with Allow), 408 (body timeout),
411/413 (body, items, text length), 422 (not JSON, nested deeper than --max-json-depth, wrong schema, inputs
the task cannot take). The body's depth is measured before it is parsed; connections that do not finish their
headers within --header-timeout are closed with 408 (`bertkit.serve.protocol`).
"""


import asyncio
import functools
import hmac
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bertkit.data.readers import check_inputs_text
from bertkit.errors import CheckpointError, ConfigError, DataError
from bertkit.run_dir import RunDir

__all__ = ["ServeSettings", "create_app", "app_from_env", "require_server_stack"]

log = logging.getLogger("bertkit.serve")
access = logging.getLogger("bertkit.access")
ENV_SETTINGS = "BERTKIT_SERVE_SETTINGS"


@dataclass
class ServeSettings:
    path: str
    api_key: str | None = None
    max_items: int = 64  # inputs per request
    max_chars: int = 20_000  # characters per text field
    max_body_bytes: int = 2 * 2**20
    batching: bool = True
    max_batch_items: int = 64  # examples per forward pass
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    body_timeout: float = 10.0  # seconds a client has to send its whole body
    header_timeout: float = 10.0  # seconds a connection has to send its request line and headers
    max_json_depth: int = 16  # nesting of the request's JSON, checked before it is parsed


def _error(status: int, code: str, message: str, **extra: Any):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, **extra}})


def _model_info(predictor: Any, path: Path) -> dict[str, Any]:
    from bertkit.inference.onnx_model import read_manifest

    state = predictor.task.state()
    info: dict[str, Any] = {"model": path.resolve().name, "task": predictor.task.name,
                            "problem": state.get("problem"), "labels": state.get("labels"),
                            "precision": predictor.rt.precision, "base_model": predictor.config.model.name,
                            "input_schema": predictor.task.served_input_schema(),
                            "input_examples": list(predictor.task.input_examples)}
    manifest = read_manifest(path)
    if manifest is not None:
        info.update({"format": "onnx", "quantize": manifest.get("quantize"), "parity": manifest.get("parity")})
        path = Path(manifest.get("source_run", path))
    run = RunDir(path)
    for name, key in (("lineage.json", "lineage"), ("results.json", "results")):
        try:
            info[key] = run.read_json(name, default={}) or None  # an export may outlive its run
        except CheckpointError:
            info[key] = None
    if info["lineage"]:
        info["base_model"] = info["lineage"].get("base_model") or info["base_model"]
    info["dev_metrics"] = (info.pop("results") or {}).get("dev")
    return _without_local_paths(info)


def _without_local_paths(value: Any) -> Any:
    """`value` with every absolute local path (the run's, a base model's or parent's folder) cut to its last
    name: a client learns which model answers, not where the server keeps its files."""
    if isinstance(value, dict):
        return {k: _without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_local_paths(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return Path(value).name
    return value


def require_server_stack() -> None:
    """Refuse, with the extra to install, where the HTTP stack (fastapi, uvicorn) is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError("bertkit serve needs fastapi and uvicorn; install bertkit[serve]") from None


def create_app(settings: ServeSettings):
    """The FastAPI application for `settings.path` (a run directory or an ONNX export folder)."""
    require_server_stack()
    from fastapi import FastAPI

    served: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from bertkit.inference.predictor import Predictor
        from bertkit.serve.batcher import Batcher

        predictor = await asyncio.to_thread(Predictor.from_path, settings.path)
        batcher = Batcher(predictor.predict_examples, enabled=settings.batching,
                          max_items=settings.max_batch_items, max_wait=settings.max_wait_ms / 1000)
        batcher.start()
        served.update(predictor=predictor, batcher=batcher, info=_model_info(predictor, Path(settings.path)))
        if hasattr(predictor.task, "embed"):  # the vectors' size, which /v1/embeddings publishes
            probe = await asyncio.to_thread(predictor.predict, ["a"])
            served["info"]["dimensions"] = len(probe[0]["embedding"])
        log.info("serving %s (%s)", settings.path, predictor.task.name)
        yield
        await batcher.stop()  # requests already queued are answered before the process ends

    app = FastAPI(title="bertkit", version="1", lifespan=lifespan)
    _add_guard(app, settings)
    app.add_middleware(_BodyTimeout, seconds=settings.body_timeout)
    _add_error_handlers(app)
    _add_routes(app, settings, served)
    return app


def _add_guard(app: Any, settings: ServeSettings) -> None:
    """Bodies without a length or over the limit are refused before they are read; every answer is logged."""
    from fastapi import Request

    @app.middleware("http")
    async def guard_and_log(request: Request, call_next):
        start = time.perf_counter()
        length = request.headers.get("content-length")
        if request.method == "POST":
            if length is None or not length.isdigit():
                response = _error(411, "length_required", "send a Content-Length header with the body's size")
            elif int(length) > settings.max_body_bytes:
                response = _error(413, "body_too_large", f"the body is {length} bytes; the limit is "
                                  f"{settings.max_body_bytes} (--max-body-bytes)", limit="max_body_bytes",
                                  max=settings.max_body_bytes)
            else:
                response = await _answer(request, call_next)
        else:
            response = await _answer(request, call_next)
        access.info(json.dumps({"method": request.method, "path": request.url.path, "status": response.status_code,
                                "ms": round((time.perf_counter() - start) * 1000, 2),
                                "client": request.client.host if request.client else None}))
        return response


async def _answer(request: Any, call_next: Any) -> Any:
    """The app's answer; an unexpected error is answered (500) here, so that the access log has it too."""
    try:
        return await call_next(request)
    except asyncio.TimeoutError:
        raise  # a body that stopped arriving: _BodyTimeout answers 408
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "internal", f"{type(exc).__name__}: {exc}")


class _BodyTimeout:
    """An ASGI middleware: a client that stops sending its body gets 408 after `seconds` instead of holding a
    connection (and a graceful shutdown) open. Only the body is timed; the answer may take as long as it
    takes."""

    def __init__(self, app: Any, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        done, started = False, False

        async def timed_receive() -> dict:
            nonlocal done
            if done:
                return await receive()
            message = await asyncio.wait_for(receive(), self.seconds)
            done = message.get("type") != "http.request" or not message.get("more_body", False)
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except asyncio.TimeoutError:
            if started:
                raise
            response = _error(408, "body_timeout", f"the request body did not arrive within {self.seconds:g} s "
                              "(--body-timeout)")
            await response(scope, receive, send)


class _Unauthorized(Exception):
    pass


def _add_error_handlers(app: Any) -> None:
    """Every error is JSON `{"error": {"code", "message", ...}}`."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        return _error(422, "invalid_request", "; ".join(f"{f['field']}: {f['problem']}" for f in fields),
                      fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        # Errors raised before the schema is checked (a body that is not UTF-8, an unknown path) get the same
        # JSON error shape as every other answer.
        if _timed_out(exc.__cause__):  # FastAPI wraps a failed body read in a 400 (the middleware's task group)
            return _error(408, "body_timeout", "the request body did not arrive in time (--body-timeout)")
        codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
        status = 422 if exc.status_code == 400 else exc.status_code  # a body that cannot be read: as the README says
        response = _error(status, codes.get(exc.status_code, "http_error"), str(exc.detail))
        response.headers.update(exc.headers or {})  # Allow on a 405
        return response

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "internal", f"{type(exc).__name__}: {exc}")

    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, exc: _Unauthorized):
        response = _error(401, "unauthorized", "missing or wrong API key; send 'Authorization: Bearer KEY'")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response


def _timed_out(exc: BaseException | None) -> bool:
    """Whether `exc` is, wraps or groups the body timeout's asyncio.TimeoutError."""
    if exc is None:
        return False
    if isinstance(exc, asyncio.TimeoutError):
        return True
    return _timed_out(exc.__cause__) or any(_timed_out(e) for e in getattr(exc, "exceptions", ()))


def input_chars(item: Any) -> int:
    """How long one raw input is, in characters, for --max-chars: its longest text (a string; each string of
    a dict, and each string of a list in it, as a multiple-choice input's choices), or a token list joined
    by spaces."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, dict):
        texts = [v for v in item.values() if isinstance(v, str)]
        texts += [t for v in item.values() if isinstance(v, list) for t in v if isinstance(t, str)]
        return max((len(t) for t in texts), default=0)
    if isinstance(item, list):
        return sum(len(t) + 1 for t in item if isinstance(t, str))
    return 0


def _over_limits(inputs: list[Any], settings: ServeSettings):
    """The 413 answer for a request over the item or text-length limits, else None."""
    if len(inputs) > settings.max_items:
        return _error(413, "too_many_inputs", f"{len(inputs)} inputs; the limit is {settings.max_items} "
                      "per request (--max-items)", limit="max_items", max=settings.max_items)
    for i, item in enumerate(inputs):
        longest = input_chars(item)
        if longest > settings.max_chars:
            return _error(413, "text_too_long", f"input {i}: {longest} characters; the limit is "
                          f"{settings.max_chars} (--max-chars)", limit="max_chars", max=settings.max_chars, input=i)
    return None


_ERRORS = {
    401: "missing or wrong API key (when the server has one): send 'Authorization: Bearer KEY'",
    408: "the request body did not arrive within --body-timeout",
    411: "a POST without a Content-Length header",
    413: "the body, the number of inputs or a text is over a limit (--max-body-bytes, --max-items, --max-chars)",
    422: "a body that is not JSON, nests deeper than --max-json-depth, does not fit the schema, or holds inputs "
         "the served model cannot take",
}


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest, counted without parsing it (no recursion, linear
    time): string literals are dropped, then the running count of brackets is taken."""
    import re

    import numpy as np

    brackets = re.sub(rb'"(?:[^"\\]|\\.)*"', b"", body).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    arr = np.frombuffer(brackets, dtype=np.uint8)
    return int(np.cumsum(np.where((arr == ord("[")) | (arr == ord("{")), 1, -1)).max())


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _error_models():
    from pydantic import BaseModel, ConfigDict

    class ErrorDetail(BaseModel):
        model_config = ConfigDict(extra="allow")
        code: str
        message: str

    class ErrorBody(BaseModel):
        error: ErrorDetail

    return {status: {"model": ErrorBody, "description": text} for status, text in _ERRORS.items()}


def _predict_body_schema(settings: ServeSettings, served: dict[str, Any]) -> dict[str, Any]:
    """The request body's JSON Schema, with the served model's own input schema once it is loaded."""
    item = _max_length(served["info"]["input_schema"], settings.max_chars) if "info" in served else {}
    return {"type": "object", "required": ["inputs"], "properties": {"inputs": {
        "type": "array", "minItems": 1, "maxItems": settings.max_items, "items": item,
        "description": "what the served model takes, one item per input (/v1/model's input_schema)"}}}


def _embeddings_body_schema(settings: ServeSettings, served: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI embeddings request as this server takes it: texts (not token ids) within its limits, and
    `dimensions` only as the model's own size (published once the model is loaded)."""
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_chars}
    dimensions: dict[str, Any] = {"type": "integer"}
    if "dimensions" in served.get("info", {}):
        dimensions["enum"] = [served["info"]["dimensions"]]
    dimensions = {"anyOf": [dimensions, {"type": "null"}]}
    return {"type": "object", "required": ["input"], "properties": {
        "input": {"anyOf": [text, {"type": "array", "minItems": 1, "maxItems": settings.max_items, "items": text}],
                  "description": "a text or a list of texts"},
        "model": {"type": "string", "description": "echoed back; the server has one model"},
        "encoding_format": {"enum": ["float", "base64"], "default": "float"},
        "dimensions": {**dimensions, "description": "the model's vector size (no shortening)"},
        "user": {"type": "string"}}}


def _rerank_body_schema(settings: ServeSettings) -> dict[str, Any]:
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_chars}
    return {"type": "object", "required": ["query", "documents"], "properties": {
        "query": text, "documents": {"type": "array", "minItems": 1, "maxItems": settings.max_items - 1,
                                     "items": text},
        "top_n": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}],
                  "description": "the best this many (default: all)"},
        "model": {"type": "string", "description": "echoed back; the server has one model"},
        "return_documents": {"type": "boolean", "default": False}}}


def _max_length(schema: Any, limit: int) -> Any:
    """A copy of a JSON Schema whose strings are at most `limit` characters long (--max-chars)."""
    if isinstance(schema, list):
        return [_max_length(s, limit) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _max_length(v, limit) for k, v in schema.items()}
    if out.get("type") == "string":
        out["maxLength"] = min(limit, out.get("maxLength", limit))
    return out


def _add_routes(app: Any, settings: ServeSettings, served: dict[str, Any]) -> None:
    from fastapi import Depends, Request
    from pydantic import BaseModel

    class PredictResponse(BaseModel):
        predictions: list[Any]

    errors = _error_models()
    key = Depends(_key_check(settings))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model_loaded": "predictor" in served}

    @app.get("/v1/model", dependencies=[key], responses={401: errors[401]})
    async def model() -> dict[str, Any]:
        batcher = served["batcher"]
        return {**served["info"], "batching": {"enabled": settings.batching, "max_batch_items":
                settings.max_batch_items, "max_wait_ms": settings.max_wait_ms, "batches": batcher.batches,
                "examples": batcher.examples}, "limits": {"max_items": settings.max_items,
                "max_chars": settings.max_chars, "max_body_bytes": settings.max_body_bytes,
                "max_json_depth": settings.max_json_depth}}

    @app.post("/v1/predict", response_model=PredictResponse, dependencies=[key], responses=errors,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}})
    async def predict(request: Request):
        inputs = await _predict_inputs(request, settings)
        if not isinstance(inputs, list):
            return inputs  # the error answer
        examples = _examples(served["predictor"], inputs, inputs, settings)
        if not isinstance(examples, list):
            return examples  # the error answer
        return {"predictions": await served["batcher"].submit(examples)}

    not_embedding = {**errors[422], "description": "the served model is not an embedding model"}

    @app.post("/v1/embeddings", dependencies=[key], responses={**errors, 404: not_embedding},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}})
    async def embeddings(request: Request):
        """The OpenAI embeddings API (`input`, `model`, `encoding_format` float or base64), for an embedding run;
        the `openai` client's `embeddings.create` works against it."""
        body = await _json_body(request, settings, _embeddings_model())
        if not isinstance(body, _embeddings_model()):
            return body  # the error answer
        predictor = served["predictor"]
        if not hasattr(predictor.task, "embed"):
            return _error(404, "not_an_embedding_model", f"the served model is a {predictor.task.name} model; "
                          "/v1/embeddings serves runs of bertkit train --task embedding")
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        examples = _examples(predictor, texts, texts, settings)
        if not isinstance(examples, list):
            return examples  # the error answer
        vectors = [p["embedding"] for p in await served["batcher"].submit(examples)]
        if body.dimensions is not None and body.dimensions != len(vectors[0]):
            return _error(422, "invalid_input", f"dimensions {body.dimensions}: this model's vectors have "
                          f"{len(vectors[0])}; leave dimensions out")
        tokens = sum(len(ids) for ids in predictor.tokenizer(texts, truncation=True)["input_ids"])
        return {"object": "list", "model": body.model or served["info"]["model"],
                "data": [{"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    not_rerank = {**errors[422], "description": "the served model is not a rerank model"}

    @app.post("/v1/rerank", dependencies=[key], responses={**errors, 404: not_rerank},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}})
    async def rerank(request: Request):
        """Documents ordered by a rerank run's relevance to a query (the request and answer of Cohere's and
        Jina's rerank APIs: `query`, `documents`, `top_n`; `results` of `index` and `relevance_score`)."""
        body = await _json_body(request, settings, _rerank_model())
        if not isinstance(body, _rerank_model()):
            return body  # the error answer
        predictor = served["predictor"]
        if predictor.task.name != "rerank":
            return _error(404, "not_a_rerank_model", f"the served model is a {predictor.task.name} model; "
                          "/v1/rerank serves runs of bertkit train --task rerank")
        pairs = [{"query": body.query, "passage": d} for d in body.documents]
        examples = _examples(predictor, pairs, [body.query, *body.documents], settings)
        if not isinstance(examples, list):
            return examples  # the error answer
        scores = [p["score"] for p in await served["batcher"].submit(examples)]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.top_n or len(scores)]
        return {"model": body.model or served["info"]["model"], "results": [
            {"index": i, "relevance_score": scores[i], **({"document": {"text": body.documents[i]}}
                                                          if body.return_documents else {})} for i in order]}

    app.openapi = _openapi(app, settings, served)


def _examples(predictor: Any, inputs: list[Any], texts: list[Any], settings: ServeSettings) -> Any:
    """The served task's examples of a request's inputs, or the error answer: 413 over the limits (measured on
    `texts`), 422 for an input the task cannot take."""
    refused = _over_limits(texts, settings)
    if refused is not None:
        return refused
    try:
        check_inputs_text(texts)
        return predictor.task.make_examples(inputs, predictor.tokenizer)
    except (DataError, TypeError, KeyError) as exc:
        return _error(422, "invalid_input", str(exc).strip("'\""))


@functools.cache
def _rerank_model() -> Any:
    """The pydantic model of a /v1/rerank body."""
    from pydantic import BaseModel, ConfigDict, Field

    class RerankRequest(BaseModel):
        model_config = ConfigDict(extra="ignore", strict=True)
        query: str = Field(min_length=1)
        documents: list[str] = Field(min_length=1)
        top_n: int | None = Field(default=None, ge=1)
        model: str = ""
        return_documents: bool = False

    return RerankRequest


def _key_check(settings: ServeSettings):
    """The dependency of the /v1 routes: `Authorization: Bearer KEY` (the scheme in any case) when the server
    has a key; else _Unauthorized, answered 401."""
    from fastapi import Request

    def require_key(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.api_key.encode()):
            raise _Unauthorized()

    return require_key


def _encoded(vector: list[float], encoding: str) -> Any:
    """A vector as the OpenAI API sends it: a list of floats, or base64 of its little-endian float32 bytes."""
    if encoding == "float":
        return vector
    import base64

    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


@functools.cache
def _embeddings_model() -> Any:
    """The pydantic model of a /v1/embeddings body (OpenAI's fields; token-id inputs are not taken)."""
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field

    class EmbeddingsRequest(BaseModel):
        model_config = ConfigDict(extra="ignore", strict=True)
        input: str | list[str] = Field(min_length=1)
        model: str = ""
        encoding_format: Literal["float", "base64"] = "float"
        dimensions: int | None = None
        user: str = ""

    return EmbeddingsRequest


async def _predict_inputs(request: Any, settings: ServeSettings) -> Any:
    """The `inputs` list of a /v1/predict body, or the error answer (see `_json_body`)."""
    body = await _json_body(request, settings, _request_model())
    return body.inputs if isinstance(body, _request_model()) else body


async def _json_body(request: Any, settings: ServeSettings, model: Any) -> Any:
    """The body as `model` (a pydantic model), or the error answer: 408 when the body is late, 422 when it
    nests deeper than --max-json-depth (measured before parsing), is not JSON or does not fit `model`."""
    from pydantic import ValidationError

    try:
        raw = await request.body()
    except Exception as exc:  # _BodyTimeout's limit, raised through the middleware's task group
        if not _timed_out(exc):
            raise
        return _error(408, "body_timeout", f"the request body did not arrive within {settings.body_timeout:g} s "
                      "(--body-timeout)")
    depth = json_depth(raw)
    if depth > settings.max_json_depth:
        return _error(422, "too_deep", f"the JSON nests {depth} levels deep; the limit is "
                      f"{settings.max_json_depth} (--max-json-depth)", limit="max_json_depth",
                      max=settings.max_json_depth)
    try:
        return model.model_validate(json.loads(raw))
    except (ValueError, UnicodeDecodeError) as exc:  # pydantic's ValidationError is a ValueError
        if isinstance(exc, ValidationError):
            fields = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
            return _error(422, "invalid_request", "; ".join(f"{f['field']}: {f['problem']}" for f in fields),
                          fields=fields)
        return _error(422, "invalid_request",
                      "the body is not JSON: send a JSON object (/v1/predict: {\"inputs\": [...]})")


@functools.cache
def _request_model() -> Any:
    """The pydantic model of a /v1/predict body (made once: pydantic is the server stack's)."""
    from pydantic import BaseModel, Field

    class PredictRequest(BaseModel):
        inputs: list[str | list[str] | dict[str, Any]] = Field(min_length=1)

    return PredictRequest


def _openapi(app: Any, settings: ServeSettings, served: dict[str, Any]):
    """FastAPI's schema with the served model's input schema in /v1/predict's body, /v1/embeddings where the
    model is an embedding model (made again until the model is loaded, then kept) and the bearer scheme when
    the server has a key."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
        body["schema"] = _predict_body_schema(settings, served)
        task = served["info"]["task"] if "info" in served else None  # None: no model loaded yet (all routes)
        for path, kind, make in (("/v1/embeddings", "embedding", lambda: _embeddings_body_schema(settings, served)),
                                 ("/v1/rerank", "rerank", lambda: _rerank_body_schema(settings))):
            if task in (None, kind):
                body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
                body["schema"] = make()
            else:  # a model of another task: the route only answers 404, and is not published
                del schema["paths"][path]
        if settings.api_key is not None:
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path in {"/v1/predict", "/v1/model", "/v1/embeddings", "/v1/rerank"} & set(schema["paths"]):
                next(iter(schema["paths"][path].values()))["security"] = [{"bearer": []}]
        if "info" in served:
            app.openapi_schema = schema
        return schema

    return openapi


def app_from_env():
    """The app for `uvicorn --factory` in worker processes: settings come from the environment."""
    root = logging.getLogger("bertkit")
    if not root.handlers:  # a worker process started by uvicorn: log like the command line does
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("bertkit: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return create_app(ServeSettings(**json.loads(os.environ[ENV_SETTINGS])))


def serve(settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "info") -> None:
    """Run the service until SIGINT/SIGTERM; in-flight requests finish first (uvicorn's graceful shutdown)."""
    require_server_stack()
    import uvicorn

    os.environ[ENV_SETTINGS] = json.dumps(asdict(settings))
    from bertkit.serve.protocol import uvicorn_settings

    uvicorn.run("bertkit.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False, timeout_graceful_shutdown=30,
                **uvicorn_settings(settings.header_timeout))
