"""Compressing a trained model's weights, and the stored form every saved model uses.

A model is saved as a flat dict of dense tensors (what safetensors holds) plus, per entry
of its ``state_dict``, an *encoding* saying how the stored parts rebuild it:

* ``dense``: stored as is;
* ``csr``: a sparse CSR buffer, stored as its ``crow``, ``col`` and ``values`` parts and
  rebuilt sparse;
* ``pruned``: a dense tensor pruned by magnitude, stored as CSR parts (the smallest
  integer index types that fit) and rebuilt dense;
* ``float16``: stored half, rebuilt in its own dtype (computed in float32: CPU half
  matmuls are slow or missing);
* ``int8``: per-row symmetric quantisation, ``q`` int8 and a float32 ``scale`` per row,
  rebuilt as ``q * scale``;
* ``low-rank``: a truncated SVD, ``left`` (rows x rank, the singular values folded in)
  and ``right`` (rank x columns), rebuilt as their product.

A compressed variant is scored by the model's own ``score`` after its stored form is
decoded into it (:func:`restore_into`): the model computes with exactly the values the
compressed file represents, so its quality is the compressed model's, while its size is
measured on the stored form (the bytes of the safetensors file), not on the decoded
weights.  Linear layers of an ``int8`` variant are, in addition, swapped for torch's
dynamically quantised ones (int8 weights and activations at inference) where the model's
``score`` runs on them (see :func:`_quantise_linear`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from m6bench.errors import ConfigError
from m6bench.training.recommender import Recommender

PART = "::"  # separates a state_dict name from its part's name in the stored dict


@dataclass
class StoredState:
    """What a saved model's file holds: ``tensors`` (dense, contiguous, safetensors'
    input), each ``state_dict`` name's ``encodings`` entry (``{"kind": ..., ...}``) and
    ``quantised_linear`` (nn.Linear layers to quantise dynamically after loading)."""

    tensors: dict[str, torch.Tensor]
    encodings: dict[str, dict[str, Any]]
    quantised_linear: list[str] = field(default_factory=list)

    def nbytes(self, name: str) -> int:
        """Bytes the stored parts of state_dict entry ``name`` take."""
        return sum(_bytes(t) for key, t in self.tensors.items()
                   if key == name or key.startswith(name + PART))

    def largest_tensor_bytes(self) -> int:
        """Bytes of the largest state_dict entry, all its stored parts counted."""
        return max((self.nbytes(name) for name in self.encodings), default=0)


def _bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


# ----------------------------------------------------------------------------- encoding
def encode_state(state: Mapping[str, torch.Tensor]) -> StoredState:
    """The stored form of an uncompressed ``state_dict``: dense tensors as they are, sparse
    CSR buffers as their parts (safetensors holds dense tensors only)."""
    stored = StoredState({}, {})
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        if tensor.layout == torch.sparse_csr:
            _put_csr(stored, name, tensor, kind="csr")
        else:
            _put(stored, name, "dense", {"": tensor})
    return stored


def _put(stored: StoredState, name: str, kind: str, parts: Mapping[str, torch.Tensor],
         **details: Any) -> None:
    """Store ``name`` as ``parts`` (``""`` names the whole tensor), replacing what was
    stored for it before."""
    for key in [k for k in stored.tensors if k == name or k.startswith(name + PART)]:
        del stored.tensors[key]
    for part, tensor in parts.items():
        key = name if not part else f"{name}{PART}{part}"
        # clone: safetensors refuses tensors that share storage (tied or sliced weights)
        stored.tensors[key] = tensor.detach().cpu().contiguous().clone()
    stored.encodings[name] = {"kind": kind, **details}


def _smallest_index_dtype(bound: int) -> torch.dtype:
    for dtype in (torch.int16, torch.int32):
        if bound <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _put_csr(stored: StoredState, name: str, sparse: torch.Tensor, *, kind: str,
             dtype: torch.dtype | None = None) -> None:
    rows, cols = sparse.shape
    parts = {"crow": sparse.crow_indices().to(_smallest_index_dtype(sparse._nnz())),
             "col": sparse.col_indices().to(_smallest_index_dtype(cols)),
             "values": sparse.values()}
    _put(stored, name, kind, parts, shape=[rows, cols],
         dtype=str(dtype or sparse.dtype).removeprefix("torch."))


def decode_state(stored: StoredState) -> dict[str, torch.Tensor]:
    """The ``state_dict`` the stored form represents (what ``load_state_dict`` takes)."""
    state = {}
    for name, encoding in stored.encodings.items():
        def part(key: str, name: str = name) -> torch.Tensor:
            return stored.tensors[f"{name}{PART}{key}"]

        kind = encoding["kind"]
        if kind == "dense":
            state[name] = stored.tensors[name]
        elif kind in ("csr", "pruned"):
            sparse = torch.sparse_csr_tensor(part("crow").long(), part("col").long(),
                                             part("values"), tuple(encoding["shape"]))
            state[name] = sparse if kind == "csr" else sparse.to_dense()
        elif kind == "float16":
            state[name] = stored.tensors[name].to(getattr(torch, encoding["dtype"]))
        elif kind == "int8":
            state[name] = part("q").float() * part("scale")[:, None]
        elif kind == "low-rank":
            state[name] = part("left") @ part("right")
        else:
            raise ConfigError(f"Stored tensor {name!r} has encoding {kind!r}, which this "
                              "m6bench cannot decode; load it with the release that wrote it.")
    return state


def restore_into(model: Recommender, stored: StoredState) -> Recommender:
    """Load ``stored`` into ``model`` (strictly: every key, no extra ones), in eval mode;
    return it, or a copy whose linear layers ``stored`` names are torch's dynamically
    quantised ones (use the returned model)."""
    model.load_state_dict(decode_state(stored), strict=True)
    model.eval()
    if stored.quantised_linear:
        return _quantise_linear(model, stored.quantised_linear)
    return model


def _quantise_linear(model: Recommender, names: list[str]) -> Recommender:
    """``model`` with the linear layers ``names`` dynamically quantised (int8 weights and
    activations), when its ``score`` still runs so; else ``model`` as it is, its linear
    weights the dequantised int8 values.  A model that reads ``layer.weight`` as a tensor
    (NeuMF splits its output layer's) cannot run on quantised layers, whose weight is a
    method; probing one score call tells, the same way at compression and at load time."""
    import copy
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    quantised = copy.deepcopy(model)
    with warnings.catch_warnings():  # torch's notices that quantised tensors are deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor")
        quantize_dynamic(quantised, {name: per_channel_dynamic_qconfig for name in names},
                         inplace=True)
    probe = torch.arange(min(2, model.n_users), device="cpu")
    try:
        with torch.no_grad():
            quantised.score(probe)
    except (TypeError, AttributeError, RuntimeError, NotImplementedError):
        return model
    return quantised


# ----------------------------------------------------------------------------- compression
@dataclass(frozen=True)
class CompressionSpec:
    """A way to compress a trained model, registered by the core or a plugin.

    ``apply(model, options)`` returns the model's :class:`StoredState` compressed (start
    from :func:`encode_state` and replace entries; helpers below quantise, prune and
    factorise one tensor).  ``defaults`` lists every option with its default, ``choices``
    the allowed values of an option where they are few; a variant's default name is the
    method followed by its option values (``prune-0.5``).
    """

    name: str
    apply: Callable[[Recommender, Mapping[str, Any]], StoredState]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    description: str = ""

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``defaults`` overridden by ``given`` (cast to each default's type), checked."""
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            raise ConfigError(f"Compression {self.name!r} has no option {unknown[0]!r}; its "
                              f"options are {sorted(self.defaults) or 'none'}.")
        options = dict(self.defaults)
        for key, value in given.items():
            default = options[key]
            try:
                options[key] = type(default)(value) if default is not None else value
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"Compression {self.name!r} option {key}={value!r} is not "
                                  f"a {type(default).__name__}.") from exc
            allowed = self.choices.get(key)
            if allowed is not None and options[key] not in allowed:
                raise ConfigError(f"Compression {self.name!r} option {key}={value!r} is not "
                                  f"one of {list(allowed)}.")
        return options

    def variant_name(self, options: Mapping[str, Any]) -> str:
        return "-".join([self.name, *(f"{options[key]:g}" if isinstance(options[key], float)
                                      else str(options[key]) for key in sorted(options))])


def entity_tables(model: Recommender) -> list[str]:
    """State names of the float 2-D tables with a row per user or item (embeddings, and
    EASE's item x item matrix): what the table compressions act on."""
    rows = {model.n_users, model.n_items}
    return [name for name, t in model.state_dict().items()
            if t.layout == torch.strided and t.is_floating_point() and t.dim() == 2
            and t.shape[0] in rows]


def linear_weights(model: torch.nn.Module) -> dict[str, str]:
    """``{state name of the weight: module name}`` of every nn.Linear layer."""
    return {f"{name}.weight": name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)}


def quantise_rows(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8: ``q = round(x / scale)`` with ``scale = max|row| / 127``,
    so each entry is off by at most ``scale / 2`` (a zero row gets scale 1)."""
    table = table.detach().float()
    scale = table.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(table / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def prune_magnitude(tensor: torch.Tensor, sparsity: float) -> torch.Tensor:
    """``tensor`` with its ``round(sparsity * numel)`` smallest-magnitude entries zeroed
    (ties broken by position, so exactly that many go)."""
    drop = round(sparsity * tensor.numel())
    flat = tensor.detach().reshape(-1).clone()
    if drop > 0:
        order = torch.argsort(flat.abs(), stable=True)
        flat[order[:drop]] = 0
    return flat.reshape(tensor.shape)


def low_rank(tensor: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(left, right)`` with ``left @ right`` the best rank-``rank`` approximation of
    ``tensor`` (truncated SVD; the singular values are folded into ``left``)."""
    u, s, vh = torch.linalg.svd(tensor.detach().double(), full_matrices=False)
    dtype = tensor.dtype
    return (u[:, :rank] * s[:rank]).to(dtype), vh[:rank].to(dtype)


def compress_float16(model: Recommender, options: Mapping[str, Any]) -> StoredState:
    stored = encode_state(model.state_dict())
    for name, tensor in model.state_dict().items():
        if tensor.layout == torch.strided and tensor.dtype in (torch.float32, torch.float64):
            _put(stored, name, "float16", {"": tensor.half()},
                 dtype=str(tensor.dtype).removeprefix("torch."))
    return stored


def compress_int8(model: Recommender, options: Mapping[str, Any]) -> StoredState:
    state = model.state_dict()
    stored = encode_state(state)
    for name in entity_tables(model):
        q, scale = quantise_rows(state[name])
        _put(stored, name, "int8", {"q": q, "scale": scale})
    linear = linear_weights(model)
    for name in linear:
        if name not in stored.encodings or stored.encodings[name]["kind"] != "dense":
            continue
        q, scale = quantise_rows(state[name])
        _put(stored, name, "int8", {"q": q, "scale": scale})
    stored.quantised_linear = sorted(linear.values())
    return stored


def compress_prune(model: Recommender, options: Mapping[str, Any]) -> StoredState:
    sparsity = float(options["sparsity"])
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"prune option sparsity={sparsity} must be in [0, 1); e.g. "
                          "--opt sparsity=0.5 zeroes half the weights of each table.")
    state = model.state_dict()
    stored = encode_state(state)
    for name in dict.fromkeys([*entity_tables(model), *linear_weights(model)]):
        pruned = prune_magnitude(state[name], sparsity)
        _put_csr(stored, name, pruned.float().to_sparse_csr(), kind="pruned",
                 dtype=state[name].dtype)
    return stored


def compress_low_rank(model: Recommender, options: Mapping[str, Any]) -> StoredState:
    rank = int(options["rank"])
    if rank < 1:
        raise ConfigError(f"low-rank option rank={rank} must be at least 1.")
    state = model.state_dict()
    stored = encode_state(state)
    for name in entity_tables(model):
        rows, cols = state[name].shape
        if rank * (rows + cols) >= rows * cols:  # factors no smaller than the table
            continue
        left, right = low_rank(state[name], rank)
        _put(stored, name, "low-rank", {"left": left, "right": right})
    return stored


BUILTIN_COMPRESSIONS = (
    CompressionSpec("float16", compress_float16,
                    description="every float tensor stored as float16 (computed in float32)"),
    CompressionSpec("int8", compress_int8,
                    description="user/item tables (and EASE's matrix) as per-row symmetric "
                                "int8 with a float32 scale per row; linear layers int8 "
                                "through torch's dynamic quantisation"),
    CompressionSpec("prune", compress_prune, defaults={"sparsity": 0.5},
                    description="the smallest-magnitude fraction `sparsity` of each "
                                "user/item table and linear weight zeroed, stored sparse"),
    CompressionSpec("low-rank", compress_low_rank, defaults={"rank": 16},
                    description="each user/item table (and EASE's matrix) replaced by its "
                                "rank-`rank` truncated SVD, stored as two factors"),
)
