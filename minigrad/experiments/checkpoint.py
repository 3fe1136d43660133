"""Checkpoints that resume a training run exactly.

A run's state is more than its model: the optimizer's moments, the estimator's baselines,
control-variate networks and their optimizers, every random Generator, the position of the
minibatch stream, the step count and the history so far. :func:`capture` walks those
objects and turns them into a tree of JSON values and arrays; :func:`restore` puts such a
tree back into freshly built objects of the same shapes, checking the whole tree before it
changes anything.

The walk knows a few kinds of things and treats every other object as a bag of attributes:

- numbers, strings, None: stored as they are (NumPy scalars as 0-d arrays, so a float32
  stays a float32 and the arithmetic after a resume is the same);
- arrays, Tensors and Parameters (their ``.data``), Buffers;
- ``numpy.random.Generator``: ``bit_generator.state``;
- optimizers and anything else with ``state_dict``/``load_state_dict``: through those;
- lists, tuples, dicts with string keys: element by element;
- functions, classes and modules: configuration, not state; skipped.

So a control (a baseline, a control variate) needs no code of its own to be saved: whatever
it holds is found.

On disk a checkpoint is one ``.npz`` file, written atomically: the arrays, plus a JSON
manifest (format name and version, the model family, the run specification, the step and
the tree) stored as bytes under the key ``manifest``. :func:`read_checkpoint` refuses a
file that is truncated, corrupt, someone else's, or another run's, with a
:class:`CheckpointError` that says which, and changes nothing.
"""
from __future__ import annotations

import functools
import io
import json
import types
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from minigrad.fileio import atomic_write
from minigrad.nn import Buffer
from minigrad.tensor import Tensor

FORMAT = "minigrad-checkpoint"
#: 2: a run keeps its estimator's control and the control's optimizer (``control``,
#: ``control_optimizer``, ``racers``) instead of an estimator adapter (version 1).
VERSION = 2
MANIFEST_KEY = "manifest"

__all__ = ["CheckpointError", "Resumable", "FORMAT", "VERSION", "capture", "restore",
           "write_checkpoint", "read_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: unreadable, foreign or another run's."""


_SKIPPED = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type,
            types.ModuleType, functools.partial, np.dtype)


# ---------------------------------------------------------------------- the walk
def _array_node(tag: str, value: np.ndarray, arrays: dict, owner=None) -> dict:
    # one array per object, however many attributes reach it (a layer kept in a list and
    # under its own name is saved once)
    seen = arrays[_SEEN]
    key = seen.get(id(owner)) if owner is not None else None
    if key is None:
        key = f"a{len(arrays) - 1}"
        arrays[key] = np.array(value, copy=True)
        if owner is not None:
            seen[id(owner)] = key
    return {tag: key}


_SEEN = "\0seen"


def capture(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-able tree of ``obj``'s state; its arrays are copied into ``arrays``."""
    arrays[_SEEN] = {}
    tree = _capture(obj, arrays, set())
    arrays.pop(_SEEN, None)
    return tree


def _capture(obj, arrays, active):
    if obj is None or isinstance(obj, (bool, str)):
        return {"value": obj}
    if isinstance(obj, np.generic):
        return _array_node("scalar", np.asarray(obj), arrays)
    if isinstance(obj, (int, float)):
        return {"value": obj}
    if isinstance(obj, np.ndarray):
        return _array_node("array", obj, arrays)
    if isinstance(obj, (Tensor, Buffer)):
        node = _array_node("tensor" if isinstance(obj, Tensor) else "buffer", obj.data, arrays,
                           owner=obj)
        if isinstance(obj.data, np.generic):  # arithmetic may leave a NumPy scalar there
            node["scalar"] = True
        return node
    if isinstance(obj, np.random.Generator):
        return {"rng": obj.bit_generator.state}
    if isinstance(obj, _SKIPPED) or callable(obj) and not hasattr(obj, "__dict__"):
        return {"skip": type(obj).__name__}
    if id(obj) in active:
        raise ValueError(f"cannot checkpoint a cycle through a {type(obj).__name__}")
    active = active | {id(obj)}
    if isinstance(obj, (list, tuple)):
        tag = "list" if isinstance(obj, list) else "tuple"
        return {tag: [_capture(v, arrays, active) for v in obj]}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise ValueError("cannot checkpoint a dict whose keys are not all strings")
        return {"dict": {k: _capture(v, arrays, active) for k, v in obj.items()}}
    if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict") and \
            not hasattr(obj, "_parameters"):
        # optimizers and streams; a Module is walked attribute by attribute instead, so that
        # its plain attributes (a baseline's running mean, say) are saved too
        return {"stateful": type(obj).__name__,
                "state": _capture(obj.state_dict(), arrays, active)}
    if hasattr(obj, "__dict__"):
        attrs = {k: v for k, v in vars(obj).items()
                 if k not in ("_parameters", "_modules", "_buffers")}
        return {"object": type(obj).__name__,
                "attrs": {k: _capture(v, arrays, active) for k, v in attrs.items()}}
    raise ValueError(f"cannot checkpoint an object of type {type(obj).__name__}")


def restore(obj: Any, tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Put the state of ``tree`` back into ``obj`` (built the same way as the saved object).

    The whole tree is checked against ``obj`` first (kinds, names, shapes, dtypes) and only
    then assigned; objects restored through their own ``load_state_dict`` (optimizers,
    streams) check their part themselves before they change. Meant for a freshly built
    run: on a :class:`CheckpointError` throw it away. Returns the restored value (``obj``
    itself where it was changed in place).
    """
    _restore(obj, tree, arrays, "state", apply=False)
    return _restore(obj, tree, arrays, "state", apply=True)


def _fail(where, message):
    raise CheckpointError(f"checkpoint does not fit this run at {where}: {message}")


def _stored(tree, tag, arrays, where):
    key = tree.get(tag)
    if key not in arrays:
        _fail(where, f"the array {key!r} is missing from the file")
    return arrays[key]


def _same_array(current, saved, where):
    current = np.asarray(current)
    if current.shape != saved.shape:
        _fail(where, f"shape {saved.shape} saved, {current.shape} here")
    if current.dtype != saved.dtype:
        _fail(where, f"dtype {saved.dtype} saved, {current.dtype} here")


def _decode(tree, arrays, where):
    """A saved leaf or container as a plain value (no object of ours to restore into)."""
    if not isinstance(tree, dict) or len(tree) != 1 and "object" not in tree:
        _fail(where, "malformed entry")
    tag = next(iter(tree))
    if tag == "value":
        return tree["value"]
    if tag == "scalar":
        return _stored(tree, tag, arrays, where)[()]
    if tag == "array":
        return _stored(tree, tag, arrays, where).copy()
    if tag == "rng":
        return tree["rng"]
    if tag == "list":
        return [_decode(t, arrays, f"{where}[{i}]") for i, t in enumerate(tree["list"])]
    if tag == "tuple":
        return tuple(_decode(t, arrays, f"{where}[{i}]") for i, t in enumerate(tree["tuple"]))
    if tag == "dict":
        if not isinstance(tree["dict"], dict):
            _fail(where, "malformed entry")
        return {k: _decode(t, arrays, f"{where}.{k}") for k, t in tree["dict"].items()}
    _fail(where, f"a saved {tag} has no object here to be restored into")


def _is_plain(tree) -> bool:
    """Whether a saved entry is data only (numbers, arrays and containers of them)."""
    if not isinstance(tree, dict) or len(tree) != 1:
        return False
    tag, body = next(iter(tree.items()))
    if tag in ("value", "scalar", "array"):
        return True
    if tag in ("list", "tuple") and isinstance(body, list):
        return all(_is_plain(t) for t in body)
    if tag == "dict" and isinstance(body, dict):
        return all(_is_plain(t) for t in body.values())
    return False


def _is_plain_value(obj) -> bool:
    """Whether a live value is data only (what :func:`_is_plain` entries decode to)."""
    if obj is None or isinstance(obj, (bool, str, int, float, np.generic, np.ndarray)):
        return True
    if isinstance(obj, (list, tuple)):
        return all(_is_plain_value(v) for v in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _is_plain_value(v) for k, v in obj.items())
    return False


def _restore(obj, tree, arrays, where, apply):
    if not isinstance(tree, dict) or not tree:
        _fail(where, "malformed entry")
    tag = next(iter(tree))
    if _is_plain(tree) and _is_plain_value(obj):
        # plain data replaces what is there: a history list grows, a lazily made array may
        # still be None in a fresh run
        value = _decode(tree, arrays, where)
        kinds = (list, tuple, dict)
        for kind in kinds:
            if obj is not None and isinstance(obj, kind) != isinstance(value, kind):
                _fail(where, f"a {type(value).__name__} saved, a {type(obj).__name__} here")
        if isinstance(obj, np.ndarray) and isinstance(value, np.ndarray):
            _same_array(obj, value, where)
        return value
    if _is_plain(tree):
        _fail(where, f"data saved, a {type(obj).__name__} here")
    if tag in ("tensor", "buffer"):
        saved = _stored(tree, tag, arrays, where)
        if not isinstance(obj, Tensor if tag == "tensor" else Buffer):
            _fail(where, f"a {tag} saved, a {type(obj).__name__} here")
        _same_array(obj.data, saved, where)
        if apply:
            obj.data = saved[()] if tree.get("scalar") else saved.copy()
        return obj
    if tag == "rng":
        if not isinstance(obj, np.random.Generator):
            _fail(where, f"a Generator saved, a {type(obj).__name__} here")
        state = tree["rng"]
        if not isinstance(state, dict) or \
                state.get("bit_generator") != obj.bit_generator.state["bit_generator"]:
            _fail(where, "the saved Generator state is of another kind")
        if apply:
            obj.bit_generator.state = state
        return obj
    if tag == "skip":
        return obj
    if tag in ("list", "tuple"):
        items = tree[tag]
        if not isinstance(obj, (list, tuple)) or len(obj) != len(items):
            size = len(obj) if hasattr(obj, "__len__") else "?"
            _fail(where, f"a {tag} of {len(items)} saved, a {type(obj).__name__} of {size} "
                         "here")
        values = [_restore(o, t, arrays, f"{where}[{i}]", apply)
                  for i, (o, t) in enumerate(zip(obj, items))]
        if apply and isinstance(obj, list):
            obj[:] = values
            return obj
        return tuple(values) if tag == "tuple" else values
    if tag == "dict":
        items = tree["dict"]
        if not isinstance(obj, dict) or set(obj) != set(items):
            here = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            _fail(where, f"keys {sorted(items)} saved, {here} here")
        values = {k: _restore(obj[k], items[k], arrays, f"{where}.{k}", apply) for k in obj}
        if apply:
            obj.update(values)
        return obj
    if tag == "stateful":
        if type(obj).__name__ != tree["stateful"] or not hasattr(obj, "load_state_dict"):
            _fail(where, f"a {tree['stateful']} saved, a {type(obj).__name__} here")
        state = _decode(tree["state"], arrays, where)
        if apply:
            try:
                obj.load_state_dict(state)
            except (ValueError, TypeError, KeyError) as e:
                _fail(where, f"{type(e).__name__}: {e}")
        return obj
    if tag == "object":
        if type(obj).__name__ != tree["object"] or not hasattr(obj, "__dict__"):
            _fail(where, f"a {tree['object']} saved, a {type(obj).__name__} here")
        attrs = tree["attrs"]
        mine = {k for k in vars(obj) if k not in ("_parameters", "_modules", "_buffers")}
        if mine != set(attrs):
            _fail(where, f"attributes {sorted(attrs)} saved, {sorted(mine)} here")
        for k in sorted(attrs):
            current = getattr(obj, k)
            value = _restore(current, attrs[k], arrays, f"{where}.{k}", apply)
            if apply and value is not current:
                # bypass Module.__setattr__: it would reorder the registries
                object.__setattr__(obj, k, value)
        return obj
    _fail(where, f"unknown entry {tag!r}")


# ---------------------------------------------------------------------- the file
def write_checkpoint(path: str | Path, *, family: str, spec: dict, step: int,
                     state: Any) -> int:
    """Write a checkpoint atomically; returns its size in bytes.

    ``state`` is any object :func:`capture` can walk (typically a dict of the run's parts).
    """
    arrays: dict[str, np.ndarray] = {}
    tree = capture(state, arrays)
    manifest = {"format": FORMAT, "version": VERSION, "family": family, "spec": spec,
                "step": int(step), "state": tree}
    if MANIFEST_KEY in arrays:
        raise ValueError(f"array key {MANIFEST_KEY!r} is reserved")
    payload = json.dumps(manifest).encode("utf8")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{MANIFEST_KEY: np.frombuffer(payload, dtype=np.uint8)})
    data = buffer.getvalue()
    with atomic_write(path, "wb") as f:
        f.write(data)
    return len(data)


def read_checkpoint(path: str | Path, *, family: str | None = None, spec: dict | None = None
                    ) -> tuple[dict, dict[str, np.ndarray]]:
    """The manifest and arrays of a checkpoint of this ``family`` and run ``spec``.

    Raises :class:`CheckpointError` when the file is unreadable (truncated, corrupt, not an
    ``.npz``), not a minigrad checkpoint, of another version, of another family, or of
    another run specification. ``family`` or ``spec`` left None is not checked (to read
    a checkpoint whatever run wrote it).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, zlib.error) as e:
        # NumPy's message about pickled data advises loading it unsafely: never do that
        reason = ("it holds pickled Python objects, which a checkpoint never does"
                  if "pickle" in str(e) else f"{type(e).__name__}: {e}")
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{reason}; delete it to start that run afresh") from None
    raw = arrays.pop(MANIFEST_KEY, None)
    try:
        manifest = json.loads(raw.tobytes().decode("utf8")) if raw is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file (no manifest of that format)")
    if manifest.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {manifest.get('version')!r}, but this "
            f"minigrad reads version {VERSION} only (version 2 keeps an estimator's "
            "control instead of its adapter): resume it with the minigrad that wrote it, "
            "or start the run again")
    if family is not None and manifest.get("family") != family:
        raise CheckpointError(f"{path} is a checkpoint of a {manifest.get('family')!r} run, "
                              f"not of a {family!r} run")
    saved = manifest.get("spec")
    if spec is not None and saved != json.loads(json.dumps(spec)):
        differ = sorted(k for k in set(saved or {}) | set(spec)
                        if (saved or {}).get(k) != spec.get(k))
        raise CheckpointError(f"{path} belongs to another run: its specification differs in "
                              f"{', '.join(differ)}")
    return manifest, arrays


def saved_value(manifest: dict, arrays: dict[str, np.ndarray], name: str) -> Any:
    """The run state's attribute ``name`` as plain values, without the run to restore it
    into; a saved object (a history, say) comes back as the dict of its attributes."""
    try:
        tree = manifest["state"]["dict"][name]
    except (KeyError, TypeError):
        raise CheckpointError(f"the checkpoint's run state has no {name!r}") from None
    if isinstance(tree, dict) and "object" in tree:
        return {k: _decode(t, arrays, f"{name}.{k}") for k, t in tree["attrs"].items()}
    return _decode(tree, arrays, name)


class Resumable:
    """What a resumable training run shares: its state is the attributes in ``state_names``.

    A run has ``family``, ``steps_done``, ``total_steps``, ``step()``, ``finish()`` and
    ``objective`` (a dict of numbers for a progress bar).
    """

    family: str
    state_names: tuple[str, ...] = ()
    steps_done: int = 0

    def state(self) -> dict:
        return {name: getattr(self, name) for name in self.state_names}

    def load_state(self, tree: Any, arrays: dict[str, np.ndarray]) -> None:
        """Restore a saved :meth:`state` (see :func:`restore`)."""
        restored = restore(self.state(), tree, arrays)
        for name, value in restored.items():
            setattr(self, name, value)

    def save(self, path: str | Path, spec: dict) -> int:
        """Write this run's checkpoint atomically; returns its size in bytes."""
        return write_checkpoint(path, family=self.family, spec=spec, step=self.steps_done,
                                state=self.state())

    def resume(self, path: str | Path, spec: dict) -> None:
        """Continue from the checkpoint at ``path`` (written by :meth:`save` for ``spec``)."""
        manifest, arrays = read_checkpoint(path, family=self.family, spec=spec)
        self.load_state(manifest["state"], arrays)
