"""The FastAPI app: POST /v1/completions and /v1/chat/completions, GET /v1/models, GET /health, the page at GET /.

Every answer that is not a success is OpenAI's error JSON with its status (400 bad request, 401
key, 404 unknown model or route, 408 body too slow, 413 too large, 429 busy, 503 loading); an
unexpected failure is a 500 in the same shape, without a traceback, and the server goes on (edge.py:
the key check before any route, and the one error edge behind every route).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from charrnn.serve import chat as chat_api
from charrnn.serve import responses
from charrnn.serve.chat import parse_chat
from charrnn.serve.edge import Edge, KeyCheck, check_key, one_line
from charrnn.serve.jobs import Job
from charrnn.serve.limits import Limits
from charrnn.serve.page import page_html
from charrnn.serve.protocol import ApiError, body_too_large, parse_completion, parse_json
from charrnn.serve.registry import Served
from charrnn.serve.streams import Stream, Token

LOG = logging.getLogger("charrnn.serve")
FAILED = {
    "timeout": (504, "the request ran past --request-timeout"),
    "cancelled": (503, "the server is shutting down"),
    "overflow": (503, "the client stopped reading: more than --max-unsent characters were waiting; request ended"),
    "error": (500, "generation failed"),
}


class State:
    """What the routes read: the models once loaded (None until then), the limits."""

    def __init__(self, limits: Limits) -> None:
        self.served: dict[str, Served] | None = None
        self.limits = limits


def create_app(limits: Limits | None = None, api_key: str | None = None, cors: Sequence[str] = ()) -> FastAPI:
    """The app with no models yet (GET /health answers 503 until `app.state.charrnn.served` is set).

    Outermost first: Edge (every failure ends there), CORS (answers preflights, which carry no key),
    KeyCheck (before routing), then FastAPI's routes and the handlers of errors they raise on purpose.
    """
    app = FastAPI(title="charrnn", docs_url=None, redoc_url=None, openapi_url=None)
    state = State(limits or Limits())
    app.state.charrnn = state
    app.add_middleware(KeyCheck, key=None if api_key is None else check_key(api_key))
    if cors:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])  # fmt: skip
    app.add_middleware(Edge)
    install_error_handlers(app)

    def models() -> dict[str, Served]:
        if state.served is None:
            raise ApiError(503, "the models are still loading", code="loading")
        return state.served

    @app.get("/health")
    def health() -> JSONResponse:
        if state.served is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        streams = {name: {"active": m.scheduler.active, "waiting": m.scheduler.queued, "steps": m.scheduler.steps}
                   for name, m in state.served.items()}  # fmt: skip
        return JSONResponse({"status": "ok", "models": list(state.served), "streams": streams})

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/v1/models")
    def list_models() -> JSONResponse:
        return JSONResponse(responses.model_list([(s.name, s.created) for s in models().values()]))

    @app.get("/v1/models/{name:path}")
    def get_model(name: str) -> JSONResponse:
        served = models().get(name)
        if served is None:
            raise unknown_model(name)
        return JSONResponse(responses.model_list([(served.name, served.created)])["data"][0])

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await answer(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await answer(request, chat=True)

    async def answer(request: Request, chat: bool) -> Response:
        served_models = models()
        raw = await read_body(request, state.limits)
        data = parse_json(raw, state.limits)
        req = parse_chat(data, state.limits) if chat else parse_completion(data, state.limits)
        served = served_models.get(req.model)
        if served is None:
            raise unknown_model(req.model)
        job = Job(req, served, state.limits)
        try:
            await job.admit()
            if req.stream:
                return StreamingResponse(stream_body(job, chat), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
            return JSONResponse(await whole_body(job, request, chat))
        except BaseException:
            job.cancel()
            raise

    return app


def unknown_model(name: str) -> ApiError:
    return ApiError(404, f"the model {name!r} does not exist; GET /v1/models lists them", "model", "model_not_found")


async def read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused (413) as soon as it passes the limit, whatever Content-Length claims, and
    (408) when it has not all arrived --body-timeout after the headers."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise body_too_large(limits)
    chunks: list[bytes] = []

    async def read() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise body_too_large(limits)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout=limits.body_timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, f"the body did not arrive within --body-timeout {limits.body_timeout_s:g}s",
                       code="body_timeout") from None  # fmt: skip
    return b"".join(chunks)


class Choice:
    """One choice's text and logprobs as they grow (the prompt first when echoing)."""

    def __init__(self, index: int, echo: list[Token] | None, logprobs: bool) -> None:
        self.index = index
        self.text: list[str] = []
        self.offset = 0
        self.generated = 0
        self.logprobs = responses.Logprobs() if logprobs else None
        if echo:
            self.add(echo, generated=False)

    def add(self, tokens: list[Token], generated: bool = True) -> tuple[str, responses.Logprobs | None]:
        text = "".join(t.char for t in tokens)
        self.text.append(text)
        part = None
        if self.logprobs is not None:
            part = responses.Logprobs()
            part.extend(tokens, self.offset)
            self.logprobs.extend(tokens, self.offset)
        self.offset += len(text)
        self.generated += len(text) if generated else 0
        return text, part


def failure(stream: Stream, reason: str | None) -> ApiError | None:
    if reason in FAILED:
        status, message = FAILED[reason]
        return ApiError(status, message, code=reason)
    return None


class Departure:
    """Watches for the client going away while a whole (non-streamed) answer is being made.

    Starlette's own `is_disconnected` polls inside a cancelled anyio scope, whose cancellation
    can reach the next await of the handler; a task that just waits for `http.disconnect` cannot.
    """

    def __init__(self, request: Request, wake: asyncio.Event) -> None:
        self.gone = False
        self.task = asyncio.get_running_loop().create_task(self._watch(request, wake))

    async def _watch(self, request: Request, wake: asyncio.Event) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        wake.set()

    async def __call__(self) -> bool:
        return self.gone

    def stop(self) -> None:
        self.task.cancel()


async def never() -> bool:
    """Streams learn of a departed client from Starlette, which cancels the response (see stream_body)."""
    return False


async def whole_body(job: Job, request: Request, chat: bool = False) -> dict[str, Any]:
    """Wait for every choice, then answer with one completion object."""
    departure = Departure(request, job.wake)
    try:
        return await _whole_body(job, departure, chat)
    finally:
        departure.stop()


async def _whole_body(job: Job, departure: Departure, chat: bool) -> dict[str, Any]:
    req = job.request
    draws = req.run.draws
    echoes = await job.echoes() if req.echo else [None] * len(job.prompts)
    choices = [Choice(s.index, echoes[s.index // draws], req.logprobs is not None) for s in job.streams]
    reasons: dict[int, str] = {}
    async for burst in job.bursts(departure):
        for stream, tokens, reason in burst:
            choices[stream.index].add(tokens)
            if reason is not None:
                error = failure(stream, reason)
                if error is not None:
                    job.cancel()
                    raise error
                reasons[stream.index] = reason
    if req.run.best_of is not None:
        choices = best_choices(choices, job, req.n)
    bodies = []
    for number, c in enumerate(choices):
        text, reason = "".join(c.text), reasons.get(c.index, "length")
        body = chat_api.message(number, text, reason) if chat else responses.choice(number, text, c.logprobs, reason)
        body["generated"] = c.generated
        bodies.append(body)
    prompt_chars = sum(len(p) for p in job.prompts) * req.n
    ident = responses.completion_id(chat)
    return responses.completion(ident, responses.now(), job.served.name, bodies, prompt_chars, chat)


def best_choices(choices: list[Choice], job: Job, keep: int) -> list[Choice]:
    """`best_of`: of each prompt's draws, the `keep` with the highest log-probability per character."""
    draws = job.request.run.draws
    rows = {s.index: s.row for s in job.streams}
    best: list[Choice] = []
    for start in range(0, len(choices), draws):
        group = choices[start : start + draws]
        group.sort(key=lambda c: -rows[c.index].score / max(rows[c.index].made, 1))
        best.extend(group[:keep])
    return best


async def stream_body(job: Job, chat: bool = False) -> AsyncIterator[bytes]:
    """Server-sent events: one chunk per choice per burst of characters, then `data: [DONE]`."""
    req = job.request
    ident, created, model = responses.completion_id(chat), responses.now(), job.served.name
    started: set[int] = set()
    try:
        choices = [Choice(s.index, None, req.logprobs is not None) for s in job.streams]
        if req.echo:
            echoes = await job.echoes()
            for c in choices:
                text, part = c.add(echoes[c.index // req.run.draws], generated=False)
                yield responses.chunk(ident, created, model, responses.choice(c.index, text, part, None))
        async for burst in job.bursts(never):
            for stream, tokens, reason in burst:
                error = failure(stream, reason)
                if error is not None:
                    yield responses.sse(error.body())
                    continue
                text, part = choices[stream.index].add(tokens)
                if chat:
                    body = chat_api.delta(stream.index, text, stream.index not in started, reason)
                    started.add(stream.index)
                else:
                    body = responses.choice(stream.index, text, part, reason)
                yield responses.chunk(ident, created, model, body, chat)
        yield responses.DONE
    except Exception as exc:  # the headers are sent: the failure ends the stream as an event, logged once
        LOG.error("unexpected %s in a stream: %s", type(exc).__name__, one_line(exc))
        yield responses.sse(ApiError(500, "internal error; the server is still up").body())
        yield responses.DONE
    finally:
        job.cancel()  # the client went away (or we are done): nothing of this request stays in the batch


def install_error_handlers(app: FastAPI) -> None:
    """Errors raised on purpose leave as OpenAI's JSON shape; anything else ends at the Edge (edge.py)."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        unread = exc.status in (408, 413)  # the rest of the body may still come: end the connection after this
        return JSONResponse(exc.body(), status_code=exc.status, headers={"connection": "close"} if unread else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        error = ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None)
        return JSONResponse(error.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(ApiError(400, "invalid request").body(), status_code=400)
