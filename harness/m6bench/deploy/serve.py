"""A trained run served over HTTP: top-k recommendations by original ids, micro-batched.

Requests that arrive together are scored as one batch: an asyncio queue is drained of what
waits (up to ``max_batch``), then, when that is more than one request, for up to
``batch_wait_ms`` more (a lone request is scored at once: at low load waiting only adds
latency; under load the queue fills while the previous batch is scored), and the batch
is scored in one worker thread, so the event loop keeps accepting requests meanwhile and
throughput rises with concurrency (one ``(B, n_items)`` scoring costs little more than one
row).  Endpoints:

- ``GET /recommend/{user_id}?k=10`` -> ``{"user", "items", "scores"}`` (original item ids,
  the user's training items masked); ``POST /recommend`` with ``{"users": [...], "k": 10}``
  -> ``{"results": [...]}`` in the same order;
- an unknown user is a 404 with a JSON ``detail`` naming it, unless the app was created with
  ``fallback="popularity"``: then it gets the most popular training items and
  ``"fallback": "popularity"`` in its result; ``k`` outside ``1..n_items`` is a 422;
- ``GET /healthz``; ``GET /metadata`` (model, benchmark, run id, variant, code, backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from m6bench.deploy.export import ONNX_FILE, OnnxScorer, Scorer, TorchScorer, export_run

if TYPE_CHECKING:
    from fastapi import FastAPI

    from m6bench.runs.artifacts import LoadedRun

BACKENDS = ("torch", "onnx")
FALLBACKS = (None, "popularity")


@dataclass
class _Request:
    user: int
    k: int
    done: asyncio.Future[tuple[np.ndarray, np.ndarray]] = field(repr=False)


class MicroBatcher:
    """Collects concurrent requests and scores them as one batch in one worker thread."""

    def __init__(self, scorer: Scorer, max_batch: int, batch_wait_ms: float) -> None:
        self.scorer = scorer
        self.max_batch = max_batch
        self.batch_wait = batch_wait_ms / 1000.0
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        # One thread: batches are scored one after another, each using torch's threads.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="m6bench-scorer")
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._drain_forever())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.worker.shutdown(wait=False, cancel_futures=True)

    async def top_k(self, user: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        done = asyncio.get_running_loop().create_future()
        await self.queue.put(_Request(user, k, done))
        return await done

    async def _drain_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            # A lone request is scored at once (waiting would only add latency when nobody
            # else is asking); when several came together more are likely on their way.
            deadline = loop.time() + (self.batch_wait if len(batch) > 1 else 0.0)
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            await self._score(batch)

    async def _score(self, batch: list[_Request]) -> None:
        users = torch.tensor([r.user for r in batch], dtype=torch.int64)
        k = max(r.k for r in batch)
        try:
            values, items = await asyncio.get_running_loop().run_in_executor(
                self.worker, self.scorer.top_k, users, k)
        except Exception as exc:  # every waiting request learns of it; the loop goes on
            for request in batch:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        for row, request in enumerate(batch):
            if not request.done.done():
                request.done.set_result((values[row, : request.k], items[row, : request.k]))


def make_scorer(loaded: LoadedRun, backend: str) -> Scorer:
    """The torch model in-process, or its ONNX export (written on first use)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {list(BACKENDS)}.")
    if backend == "torch":
        return TorchScorer(loaded.model, loaded.train.matrix)
    path = Path(loaded.artifact_dir) / ONNX_FILE
    if not path.exists():
        export_run(loaded, path)
    return OnnxScorer(path, loaded.train.matrix)


def metadata(loaded: LoadedRun, backend: str) -> dict[str, Any]:
    record = loaded.record
    return {"run_id": loaded.run_id, "variant": loaded.variant, "backend": backend,
            "plugin": record.get("plugin"), "model": record.get("model"),
            "benchmark": record.get("benchmark"), "code": record.get("code"),
            "n_users": loaded.train.n_users, "n_items": loaded.train.n_items}


def _is_batch_request(users: Any, k: Any) -> bool:
    return (isinstance(users, list) and all(isinstance(u, (str, int)) for u in users)
            and isinstance(k, int) and not isinstance(k, bool))


def create_app(loaded: LoadedRun, backend: str = "torch", max_batch: int = 64,
               batch_wait_ms: float = 2.0, fallback: str | None = None) -> FastAPI:
    """The service of one loaded run (see the module's docstring for the endpoints)."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import JSONResponse

    if fallback not in FALLBACKS:
        raise ValueError(f"fallback={fallback!r}: choose one of {list(FALLBACKS)}.")
    if max_batch < 1 or batch_wait_ms < 0:
        raise ValueError(f"max_batch={max_batch} must be >= 1 and batch_wait_ms="
                         f"{batch_wait_ms} >= 0.")
    batcher = MicroBatcher(make_scorer(loaded, backend), max_batch, batch_wait_ms)
    index_of = {str(user): index for index, user in enumerate(loaded.user_ids)}
    item_ids = list(loaded.item_ids)
    n_items = loaded.train.n_items
    popular = torch.argsort(loaded.train.item_popularity.cpu().float(), descending=True,
                            stable=True)
    about = metadata(loaded, backend)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"m6bench {about['model']} ({loaded.run_id})", lifespan=lifespan)
    app.state.batcher = batcher  # for introspection (tests swap its scorer)

    def check_k(k: int) -> None:
        if not 1 <= k <= n_items:
            raise HTTPException(422, f"k={k} is outside 1..{n_items} (the number of items); "
                                     "ask for fewer.")

    async def recommend_one(user_id: str, k: int) -> dict[str, Any]:
        index = index_of.get(str(user_id))
        if index is None:
            if fallback is None:
                raise HTTPException(404, f"Unknown user {user_id!r}: not in run "
                                         f"{loaded.run_id}'s training data (start the "
                                         "service with fallback='popularity' to serve "
                                         "popular items to new users).")
            items = popular[:k].tolist()
            return {"user": user_id, "items": [item_ids[i] for i in items],
                    "scores": loaded.train.item_popularity[items].float().tolist(),
                    "fallback": "popularity"}
        try:
            values, items = await batcher.top_k(index, k)
        except Exception as exc:  # a JSON 500; the connection and the server stay up
            raise HTTPException(500, f"Scoring user {user_id!r} failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
        return {"user": user_id, "items": [item_ids[i] for i in items.tolist()],
                "scores": values.tolist()}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    async def get_metadata() -> dict[str, Any]:
        return about

    @app.get("/recommend/{user_id}")
    async def recommend(user_id: str, k: int = Query(10)) -> dict[str, Any]:
        check_k(k)
        return await recommend_one(user_id, k)

    @app.post("/recommend")
    async def recommend_many(body: dict[str, Any]) -> Any:
        users, k = body.get("users"), body.get("k", 10)
        if not _is_batch_request(users, k):
            return JSONResponse(status_code=422, content={"detail": (
                'The body must be {"users": [id, ...], "k": int}; got '
                f"{str(body)[:200]}.")})
        check_k(k)
        results = await asyncio.gather(*(recommend_one(str(u), k) for u in users))
        return {"results": list(results)}

    return app


def run_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve under uvicorn until interrupted (one process: the model is loaded once)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def serving_threads() -> int:
    """Torch threads for a server: all cores but one.  Batches are scored one at a time in
    one worker thread, so torch may use the cores, but one is left to the event loop that
    parses requests and writes responses; more threads than cores only adds contention."""
    import os

    return max(1, (os.cpu_count() or 2) - 1)


class BackgroundServer:
    """A real uvicorn server on ``host`` and a free port, in a daemon thread of this process
    (tests, load tests, benchmarks): ``with BackgroundServer(app) as url: ...``.  Startup and
    shutdown waits are bounded by ``timeout_s``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", timeout_s: float = 60.0) -> None:
        import uvicorn

        self.host, self.timeout_s = host, timeout_s
        # IPPROTO_TCP named explicitly: asyncio turns Nagle off (TCP_NODELAY) only on
        # sockets whose proto says TCP, and with Nagle on, uvicorn's two writes per response
        # (headers, body) wait for the client's delayed ACK: 40 ms more per request.
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.bind((host, 0))
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                raise RuntimeError(f"The server on {self.url} did not start within "
                                   f"{self.timeout_s:.0f} s.")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(self.timeout_s)
        self.socket.close()
