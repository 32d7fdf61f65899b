"""Files hwnas writes and reads back without pickle: tensors in safetensors, everything else as JSON.

A pickle (torch.save of a module, or torch.load(weights_only=False)) runs whatever code the file holds,
so nothing hwnas reads is unpickled. Two entry points:

  save_tree(path, obj, kind) / load_tree(path, kind)
      hwnas's own checkpoints (search strategies, NetAdapt networks, the supernet cache): `obj` is a tree
      of dicts, lists, tuples, str/int/float/bool/None, torch tensors and numpy arrays. The tensors go
      into a safetensors file; the tree, with references to them, into its JSON metadata, tagged with
      `kind` so that one sort of file is never read as another. Loading parses JSON and tensor bytes only.

  load_state_dict_file(path)
      weights a user hands in (--weights): a .safetensors file, or a torch file holding a state dict read
      with torch.load(weights_only=True) (tensors and plain containers only; a pickled module is refused
      with a line saying how to save a state dict instead).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.errors import HwnasError

FORMAT = "hwnas-tree/1"
_META_KEY = "hwnas"
_PICKLE_MAGICS = (b"PK\x03\x04", b"\x80")  # torch's zip container, a bare pickle
STATE_DICT_HINT = ("save the weights as a state dict instead: torch.save(model.state_dict(), 'weights.pt') "
                   "or safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')")


def _encode(obj, tensors: dict[str, torch.Tensor], path: str):
    """The JSON tree of `obj`; tensors are collected into `tensors` under their path in the tree (a state
    dict under "state" keeps its names: "state/conv1.weight")."""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                raise TypeError("numpy object arrays cannot be stored")
            tensors[path] = torch.from_numpy(np.ascontiguousarray(obj).copy())
            return {"__ndarray__": path}
        tensors[path] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and "/" not in k for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: _encode(v, tensors, f"{path}/{k}" if path else k) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors, f"{path}/{i}k"), _encode(v, tensors, f"{path}/{i}")]
                              for i, (k, v) in enumerate(obj.items())]}
    raise TypeError(f"cannot store a {type(obj).__name__} (only tensors, arrays and plain containers)")


def _decode(obj, tensors):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy()
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _hashable(k):
    return tuple(k) if isinstance(k, list) else k


def dumps_tree(obj, kind: str) -> bytes:
    """The bytes of a tree file (see save_tree)."""
    from safetensors.torch import save
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(obj, tensors, "")
    meta = json.dumps({"format": FORMAT, "kind": kind, "tree": tree})
    return save(tensors, metadata={_META_KEY: meta})


def save_tree(path: str | os.PathLike, obj, kind: str) -> None:
    """Write `obj` to `path` atomically (a unique temporary name beside it, fsync, rename)."""
    from hwnas.rundir import atomic_write_bytes
    path = Path(path)
    data = dumps_tree(obj, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def _looks_pickled(path: Path) -> bool:
    """A torch zip or a bare pickle, not a safetensors file (whose first 8 bytes are a little-endian header
    length, which may well start with 0x80, followed by the JSON header's '{')."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) == 9 and head[8:9] == b"{":
        return False
    return any(head.startswith(m) for m in _PICKLE_MAGICS)


def load_tree(path: str | os.PathLike, kind: str, what: str | None = None) -> Any:
    """Read a file written by save_tree with the same `kind`. Anything else (an older hwnas's pickled
    checkpoint, another kind of file, a damaged one) is an HwnasError naming the file; nothing is executed."""
    from safetensors import SafetensorError, safe_open
    path = Path(path)
    what = what or f"{kind} file"
    if not path.is_file():
        raise HwnasError(f"{what} {path} does not exist")
    if _looks_pickled(path):
        raise HwnasError(f"{what} {path} is a pickle (written by an older hwnas, or not by hwnas): hwnas no longer "
                         f"loads pickles, which can run code; remove it and start that step afresh")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(_META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise HwnasError(f"{what} {path} is damaged or not an hwnas file ({str(e).splitlines()[0][:120]})") from None
    try:
        head = json.loads(meta) if meta else None
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise HwnasError(f"{what} {path} is not an hwnas checkpoint (no {FORMAT} record)")
    if head.get("kind") != kind:
        raise HwnasError(f"{what} {path} holds a {head.get('kind')!r}, not a {kind!r}")
    try:
        return _decode(head["tree"], tensors)
    except (KeyError, TypeError) as e:
        raise HwnasError(f"{what} {path} is damaged (a reference to a missing tensor: {e})") from None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """User weights: a state dict from .safetensors, or from a torch file read with weights_only=True.
    A checkpoint dict with a 'state_dict' (or 'model') entry is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise HwnasError(f"weights file {path} not found")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise HwnasError(f"cannot read weights {path}: not a valid safetensors file "
                             f"({str(e).splitlines()[0][:120]})") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure of the restricted unpickler means the same to the user
        msg = str(e)
        if "global" in msg.lower():  # the restricted unpickler met a class or function: objects, not tensors
            raise HwnasError(f"weights {path} hold more than tensors (a pickled module or other objects), which "
                             f"hwnas does not load because unpickling can run code; {STATE_DICT_HINT}") from None
        raise HwnasError(f"cannot read weights {path}: not a torch state dict or safetensors file "
                         f"({type(e).__name__})") from None
    if isinstance(sd, dict):
        for k in ("state_dict", "model"):
            if isinstance(sd.get(k), dict):
                sd = sd[k]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise HwnasError(f"weights {path} are not a state dict (a mapping of names to tensors); {STATE_DICT_HINT}")
    return sd
