"""One peer run for compare_peers.py, executed by the peers' virtual environment's Python.

It imports neither m6bench nor torch: it reads the split m6bench exported, trains one peer
model with its own code, times it, times the peer's own evaluation of the test set, and
writes the factors (or item-item weights) in m6bench's user and item order as .npy files,
which compare_peers.py scores with m6bench's evaluator.

    python _peers_driver.py SPEC.json
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

UNKNOWN_ITEM_BIAS = -1e9  # items a peer never trained on rank last, as the peer ranks them


def load_split(folder):
    meta = json.loads((folder / "meta.json").read_text())
    shape = (meta["n_users"], meta["n_items"])
    indptr, indices = np.load(folder / "train_indptr.npy"), np.load(folder / "train_indices.npy")
    train = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=shape)
    pairs = {part: np.load(folder / f"{part}.npy") for part in ("valid", "test")}
    return train, pairs, shape


def pairs_matrix(pairs, shape):
    return sp.csr_matrix((np.ones(len(pairs), np.float32), (pairs[:, 0], pairs[:, 1])),
                         shape=shape)


def save_snapshot(folder, **arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(array, dtype=np.float32))
    return str(folder)


def implicit_model(spec, train, pairs, shape, out):
    """implicit's ALS or BPR: one fit, each iteration timed by implicit's own callback
    (factor copies excluded), a snapshot every ``snapshot_every`` iterations."""
    from threadpoolctl import threadpool_limits

    settings, every = dict(spec["settings"]), int(spec["snapshot_every"])
    if spec["peer"] == "implicit-als":
        from implicit.cpu.als import AlternatingLeastSquares as Model
        cg_steps = settings.pop("cg_steps")
    else:
        from implicit.cpu.bpr import BayesianPersonalizedRanking as Model
        cg_steps = None
    model = Model(iterations=spec["iterations"], num_threads=spec["threads"], **settings)
    if cg_steps is not None:
        model.cg_steps = cg_steps
    if spec.get("start_factors"):
        start = Path(spec["start_factors"])
        model.user_factors = np.load(start / "user.npy").astype(np.float32)
        model.item_factors = np.load(start / "item.npy").astype(np.float32)
    epoch_s, copies = [], []

    def callback(iteration, elapsed, *progress):  # ALS: loss; BPR: correct, skipped
        epoch_s.append(elapsed)
        if (iteration + 1) % every == 0 or iteration + 1 == spec["iterations"]:
            copies.append((iteration + 1, model.user_factors.copy(), model.item_factors.copy()))

    # implicit parallelises over users itself and asks for a single-threaded BLAS
    with threadpool_limits(1, "blas"):
        started = time.perf_counter()
        model.fit(train, show_progress=False, callback=callback)
        fit_s = time.perf_counter() - started
        from implicit.evaluation import ndcg_at_k

        seen = train + pairs_matrix(pairs["valid"], shape)  # masked at test time, as m6bench
        started = time.perf_counter()
        own_ndcg = ndcg_at_k(model, seen, pairs_matrix(pairs["test"], shape), K=10,
                             show_progress=False, num_threads=spec["threads"])
        own_eval_s = time.perf_counter() - started
    snapshots = [{"epoch": epoch, "path": save_snapshot(out / f"epoch-{epoch}", user=u, item=i)}
                 for epoch, u, i in copies]
    return {"fit_s": fit_s, "epoch_s": epoch_s, "own_eval_s": own_eval_s,
            "own_ndcg10": float(own_ndcg), "snapshots": snapshots}


def cornac_model(spec, train, pairs, shape, out):
    """Cornac's BPR or EASE through its own BaseMethod (fit and test evaluation timed by
    Cornac), its parameters then put in m6bench's user and item order."""
    import cornac
    from cornac.eval_methods import BaseMethod
    from cornac.metrics import NDCG, Recall

    rows = train.tocoo()

    def triplets(users, items):
        return [(str(u), str(i), 1.0) for u, i in zip(users.tolist(), items.tolist())]

    method = BaseMethod.from_splits(
        triplets(rows.row, rows.col), triplets(pairs["test"][:, 0], pairs["test"][:, 1]),
        triplets(pairs["valid"][:, 0], pairs["valid"][:, 1]), exclude_unknowns=True,
        verbose=False)
    if spec["peer"] == "cornac-bpr":
        model = cornac.models.BPR(num_threads=spec["threads"], **spec["settings"])
    else:
        model = cornac.models.EASE(verbose=False, **spec["settings"])
    result, _ = method.evaluate(model, [NDCG(k=10), Recall(k=10)], user_based=True,
                                show_validation=False)
    averages = result.metric_avg_results
    ids = method.train_set
    users = np.array([int(raw) for raw in ids.uid_map], np.int64)
    user_rows = np.array(list(ids.uid_map.values()), np.int64)
    items = np.array([int(raw) for raw in ids.iid_map], np.int64)
    item_rows = np.array(list(ids.iid_map.values()), np.int64)
    folder = out / "fitted"
    if spec["peer"] == "cornac-bpr":
        keep_u, keep_i = user_rows < len(model.u_factors), item_rows < len(model.i_factors)
        user = np.zeros((shape[0], model.u_factors.shape[1]), np.float32)
        item = np.zeros((shape[1], model.i_factors.shape[1]), np.float32)
        bias = np.full(shape[1], UNKNOWN_ITEM_BIAS, np.float32)
        user[users[keep_u]] = model.u_factors[user_rows[keep_u]]
        item[items[keep_i]] = model.i_factors[item_rows[keep_i]]
        bias[items[keep_i]] = model.i_biases[item_rows[keep_i]]
        path = save_snapshot(folder, user=user, item=item, item_bias=bias)
    else:
        weights = np.zeros((shape[1], shape[1]), np.float32)
        weights[np.ix_(items, items)] = model.B[np.ix_(item_rows, item_rows)]
        path = save_snapshot(folder, item_item=weights)
    epochs = spec["settings"].get("max_iter", 1)
    return {"fit_s": averages["Train (s)"], "epoch_s": [averages["Train (s)"] / epochs],
            "own_eval_s": averages["Test (s)"], "own_ndcg10": float(averages["NDCG@10"]),
            "snapshots": [{"epoch": epochs, "path": path}]}


def main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    train, pairs, shape = load_split(Path(spec["split"]))
    out = Path(spec["out"])
    run = implicit_model if spec["peer"].startswith("implicit") else cornac_model
    result = run(spec, train, pairs, shape, out)
    (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
