"""The HTTP service: a real uvicorn server on a free port, answers checked against the
in-process model, error paths (404, 422, malformed bodies) and the server still serving after
them, micro-batching, both backends."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import httpx
import numpy as np
import pytest
import torch
from deploy_helpers import loaded_in_process

from m6bench.deploy.export import TorchScorer
from m6bench.deploy.serve import BackgroundServer, MicroBatcher, create_app

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(scope="module")
def loaded(module_cache, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("M6BENCH_CACHE_DIR", str(module_cache))
        return loaded_in_process("classic", "bpr-mf", tmp_path_factory.mktemp("artifact"),
                                 epochs=2)


def expected_top_k(loaded, user_index: int, k: int) -> tuple[list[str], np.ndarray]:
    """The in-process answer, masking computed here from the training matrix by hand."""
    with torch.no_grad():
        scores = loaded.model.score(torch.tensor([user_index]))[0].clone()
    seen = loaded.train.matrix.to_dense()[user_index].bool()
    scores[seen] = float("-inf")
    values, items = torch.topk(scores, k)
    return [loaded.item_ids[i] for i in items.tolist()], values.numpy()


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_served_top_k_equals_the_in_process_model_under_concurrency(loaded, backend):
    users = list(range(0, loaded.train.n_users, max(1, loaded.train.n_users // 24)))[:24]
    with BackgroundServer(create_app(loaded, backend=backend)) as url:

        async def ask_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                return await asyncio.gather(*(
                    client.get(f"/recommend/{loaded.user_ids[u]}", params={"k": 7})
                    for u in users))

        answers = asyncio.run(ask_all())
        with httpx.Client(base_url=url, timeout=30) as client:
            batch = client.post("/recommend", json={"users": [loaded.user_ids[u]
                                                              for u in users[:5]], "k": 7})
            about = client.get("/metadata").json()
    for user, answer in zip(users, answers, strict=True):
        assert answer.status_code == 200, answer.text
        items, values = expected_top_k(loaded, user, 7)
        body = answer.json()
        assert body["user"] == loaded.user_ids[user]
        assert body["items"] == items
        np.testing.assert_allclose(body["scores"], values, rtol=1e-5, atol=1e-6)
    assert batch.status_code == 200
    assert [r["items"] for r in batch.json()["results"]] == [a.json()["items"]
                                                           for a in answers[:5]]
    assert about["backend"] == backend and about["run_id"] == loaded.run_id
    assert about["model"] == "bpr-mf"


def test_training_items_are_masked(loaded):
    user = int(loaded.train.users[0])
    seen = {loaded.item_ids[i] for i in
            loaded.train.items[loaded.train.users == user].tolist()}
    k = loaded.train.n_items - len(seen)  # every unseen item, and nothing else
    with BackgroundServer(create_app(loaded)) as url:
        body = httpx.get(f"{url}/recommend/{loaded.user_ids[user]}", params={"k": k},
                         timeout=30).json()
    assert set(body["items"]).isdisjoint(seen)
    assert len(set(body["items"])) == k
    assert np.isfinite(body["scores"]).all()


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(loaded):
    n_items = loaded.train.n_items
    known = loaded.user_ids[0]
    with BackgroundServer(create_app(loaded)) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        unknown = client.get("/recommend/no-such-user")
        assert unknown.status_code == 404
        assert "no-such-user" in unknown.json()["detail"]
        for k in (0, -3, n_items + 1):
            response = client.get(f"/recommend/{known}", params={"k": k})
            assert response.status_code == 422, k
            assert str(n_items) in response.json()["detail"]
        assert client.get(f"/recommend/{known}", params={"k": "ten"}).status_code == 422
        malformed = client.post("/recommend", content=b"{not json",
                                headers={"content-type": "application/json"})
        assert malformed.status_code == 422
        for body in ([1, 2], {"users": "u1"}, {"users": [known], "k": "5"},
                     {"users": [known], "k": True}, {"users": [[1]], "k": 3}):
            response = client.post("/recommend", content=json.dumps(body),
                                   headers={"content-type": "application/json"})
            assert response.status_code == 422, body
        assert client.post("/recommend", json={"users": [known, "nobody"]}).status_code == 404
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get(f"/recommend/{known}", params={"k": n_items}).status_code == 200


def test_popularity_fallback_serves_unknown_users(loaded):
    popularity = loaded.train.item_popularity
    order = torch.argsort(popularity, descending=True, stable=True)[:5].tolist()
    with BackgroundServer(create_app(loaded, fallback="popularity")) as url:
        body = httpx.get(f"{url}/recommend/new-user", params={"k": 5}, timeout=30).json()
    assert body["fallback"] == "popularity"
    assert body["items"] == [loaded.item_ids[i] for i in order]
    assert body["scores"] == popularity[order].tolist()


def test_concurrent_requests_are_scored_in_one_batch(loaded):
    """Requests queued together reach the scorer as one batch (up to max_batch)."""
    sizes: list[int] = []
    scorer = TorchScorer(loaded.model, loaded.train.matrix)

    class Counting:
        backend = "torch"

        def top_k(self, users, k):
            sizes.append(users.numel())
            return scorer.top_k(users, k)

    async def scenario() -> list[tuple[np.ndarray, np.ndarray]]:
        batcher = MicroBatcher(Counting(), max_batch=8, batch_wait_ms=50.0)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.top_k(u, 3) for u in range(20)))
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert sizes == [8, 8, 4]
    for user, (values, items) in enumerate(answers):
        expected_values, expected_items = scorer.top_k(torch.tensor([user]), 3)
        assert items.tolist() == expected_items[0].tolist()
        # a GEMM's rounding may depend on the batch it is in
        np.testing.assert_allclose(values, expected_values[0], rtol=1e-5)


def test_a_failing_scorer_answers_500_and_the_next_request_works(loaded):
    class FailsOnce:
        backend = "torch"
        failed = False

        def top_k(self, users, k):
            if not FailsOnce.failed:
                FailsOnce.failed = True
                raise RuntimeError("injected scoring failure")
            return TorchScorer(loaded.model, loaded.train.matrix).top_k(users, k)

    app = create_app(loaded)
    app.state.batcher.scorer = FailsOnce()
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        failed = client.get(f"/recommend/{loaded.user_ids[0]}")
        assert failed.status_code == 500
        assert "injected scoring failure" in failed.json()["detail"]
        assert client.get(f"/recommend/{loaded.user_ids[0]}").status_code == 200


def test_create_app_rejects_unknown_options(loaded):
    with pytest.raises(ValueError, match="backend"):
        create_app(loaded, backend="tensorrt")
    with pytest.raises(ValueError, match="fallback"):
        create_app(loaded, fallback="random")


def test_a_request_is_not_held_by_nagle_and_delayed_acks(loaded):
    """Each response is written in two parts; with Nagle's algorithm on, the second waits
    for the client's delayed ACK (40 ms).  Sequential requests must be far quicker."""
    with BackgroundServer(create_app(loaded, batch_wait_ms=0.0)) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        client.get("/healthz")
        times = []
        for user in loaded.user_ids[:15]:
            started = time.perf_counter()
            assert client.get(f"/recommend/{user}").status_code == 200
            times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.030
