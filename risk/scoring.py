"""The learned risk score at checkout: which model is live (and which runs in shadow), loaded once per process.

Models live in `settings.VAR_DIR / "risk" / "models"` as `risk-<version>.txt` (LightGBM) with their metadata
`risk-<version>.json` (written by `risk.training.train`). `active.json` there names the live and the shadow
version: `{"live": "<version>", "shadow": "<version>" | null}`; without it the newest model is live.

`score()` is on the checkout path: it reads an immutable snapshot without a lock, re-reads `active.json` at most
once a second (a stat; a promotion in another process is seen within that second), and loads a booster only when
a version is first needed. A row is scored through LightGBM's single-row fast path (its C API's
`...SingleRowFast`, set up once per model): `Booster.predict` spends 30-50 µs a row in Python-side setup, the
fast path ~6 µs for the same result (bench/risk_score.py); `Booster.predict` stays the fallback. No model (or one
trained on another feature list) means `None`: the engine then decides on rules alone. Imports no other app.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
from django.conf import settings

from risk.schema import MODEL_FEATURES

logger = logging.getLogger(__name__)

ACTIVE_FILE = "active.json"
RECHECK_SECONDS = 1.0


class _SingleRow:
    """One booster's single-row fast predictor (LGBM_BoosterPredictForMatSingleRowFast*). LightGBM serialises
    single-row predictions on a booster itself; each thread gets its own input and output buffers."""

    def __init__(self, booster: lgb.Booster):
        from lightgbm import basic  # the library handle and error check the package itself uses

        self._booster = booster  # the fast config points into it: keep it alive as long
        self._lib = basic._LIB
        self._ncol = booster.num_feature()
        handle = ctypes.c_void_p()
        basic._safe_call(
            self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL: the probability
                ctypes.c_int(0),  # from the first iteration
                ctypes.c_int(-1),  # to the last
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(self._ncol),
                basic._c_str("num_threads=1"),
                ctypes.byref(handle),
            )
        )
        self._handle = handle
        self._check = basic._safe_call
        weakref.finalize(self, self._lib.LGBM_FastConfigFree, handle)
        self._buffers = threading.local()

    def __call__(self, values: list[float]) -> float:
        buffers = self._buffers
        if not hasattr(buffers, "row"):
            buffers.row = np.zeros(self._ncol, dtype=np.float64)
            buffers.out = np.zeros(1, dtype=np.float64)
            buffers.row_ptr = buffers.row.ctypes.data_as(ctypes.c_void_p)
            buffers.out_ptr = buffers.out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
            buffers.out_len = ctypes.c_int64(0)
        buffers.row[:] = values
        self._check(
            self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                self._handle, buffers.row_ptr, ctypes.byref(buffers.out_len), buffers.out_ptr
            )
        )
        return float(buffers.out[0])


@dataclass(frozen=True)
class LoadedModel:
    version: str
    path: Path
    features: tuple[str, ...]
    booster: lgb.Booster
    single_row: _SingleRow | None = field(default=None, repr=False)

    def predict(self, features: dict[str, object]) -> float:
        values = [float(features[name]) for name in self.features]
        if self.single_row is not None:
            return self.single_row(values)
        return float(self.booster.predict(np.array([values], dtype=np.float64), num_threads=1)[0])


def _single_row(booster: lgb.Booster) -> _SingleRow | None:
    try:
        return _SingleRow(booster)
    except Exception:  # another lightgbm build without the fast path: the public predict still answers
        logger.warning("lightgbm single-row fast path unavailable; scoring through Booster.predict", exc_info=True)
        return None


@dataclass(frozen=True)
class _Snapshot:
    directory: Path
    active_stamp: int | None  # active.json's mtime_ns (None: absent) when the snapshot was taken
    live: LoadedModel | None
    shadow: LoadedModel | None
    checked_at: float
    pinned: bool = False  # set by model_load(path): this process keeps that model, whatever active.json says
    var_dir: object = None  # settings.VAR_DIR as it was: checked on every score without building a path


_lock = threading.Lock()
_snapshot: _Snapshot | None = None
_boosters: dict[tuple[Path, int], LoadedModel] = {}  # (model file, its mtime_ns): loaded once per process


def models_dir() -> Path:
    return Path(settings.VAR_DIR) / "risk" / "models"


def _model_path(directory: Path, version: str) -> Path:
    return directory / f"risk-{version}.txt"


def model_versions(directory: Path | None = None) -> list[str]:
    """Installed versions (a model file with its metadata), oldest first: by the time in the version, then (two
    trained within one second) by the model file's modification time."""
    directory = directory or models_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob("risk-*.txt"):
        version = path.stem.removeprefix("risk-")
        if (directory / f"risk-{version}.json").is_file():
            found.append((version[:15], path.stat().st_mtime_ns, version))
    return [version for _, _, version in sorted(found)]


def model_active(directory: Path | None = None) -> dict[str, str | None]:
    """What active.json says: {"live": version | None, "shadow": version | None}."""
    path = (directory or models_dir()) / ACTIVE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"live": None, "shadow": None}
    return {"live": data.get("live") or None, "shadow": data.get("shadow") or None}


def _stamp(directory: Path) -> int | None:
    try:
        return (directory / ACTIVE_FILE).stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _load_file(path: Path) -> LoadedModel | None:
    """The model in `path` with its metadata, from this process's cache when already loaded."""
    try:
        key = (path, path.stat().st_mtime_ns)
    except FileNotFoundError:
        logger.error("risk model %s is missing", path)
        return None
    cached = _boosters.get(key)
    if cached is not None:
        return cached
    version = path.stem.removeprefix("risk-")
    try:
        meta = json.loads(path.with_name(f"risk-{version}.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        logger.error("risk model %s has no readable metadata", path)
        return None
    features = tuple(meta.get("features", ()))
    if features != MODEL_FEATURES:
        # a model trained on another feature list would read the wrong columns: rules alone are safer
        logger.error("risk model %s was trained on other features than risk.schema's; not used", version)
        return None
    booster = lgb.Booster(model_file=str(path))
    model = LoadedModel(version, path, features, booster, _single_row(booster))
    _boosters[key] = model
    return model


def _resolve(directory: Path, stamp: int | None) -> _Snapshot:
    active = model_active(directory)
    live_version = active["live"]
    if live_version is None and stamp is None:
        versions = model_versions(directory)
        live_version = versions[-1] if versions else None
    live = _load_file(_model_path(directory, live_version)) if live_version else None
    shadow_version = active["shadow"]
    shadow = _load_file(_model_path(directory, shadow_version)) if shadow_version else None
    return _Snapshot(directory, stamp, live, shadow, time.monotonic(), var_dir=settings.VAR_DIR)


def _current() -> _Snapshot:
    global _snapshot
    snapshot = _snapshot
    var_dir = settings.VAR_DIR
    now = time.monotonic()
    if (
        snapshot is not None
        and snapshot.var_dir is var_dir
        and (snapshot.pinned or now - snapshot.checked_at < RECHECK_SECONDS)
    ):
        return snapshot
    with _lock:
        snapshot = _snapshot
        directory = models_dir()
        if snapshot is not None and snapshot.directory == directory and snapshot.pinned:
            return snapshot
        stamp = _stamp(directory)
        if snapshot is not None and snapshot.directory == directory and snapshot.active_stamp == stamp:
            snapshot = _Snapshot(directory, stamp, snapshot.live, snapshot.shadow, now, var_dir=var_dir)
        else:
            snapshot = _resolve(directory, stamp)
        _snapshot = snapshot
        return snapshot


def model_load(path: Path | str | None = None) -> LoadedModel | None:
    """Load the live model now (from active.json, else the newest installed) and return it, or None when there
    is none. With `path` (a `risk-<version>.txt` file), that model becomes this process's live model until
    `model_unload()`, whatever active.json says (for benchmarks and replays)."""
    global _snapshot
    directory = models_dir()
    with _lock:
        if path is None:
            _snapshot = _resolve(directory, _stamp(directory))
            return _snapshot.live
        model = _load_file(Path(path))
        if model is None:
            raise FileNotFoundError(f"no usable risk model at {path}")
        _snapshot = _Snapshot(directory, None, model, None, time.monotonic(), pinned=True, var_dir=settings.VAR_DIR)
        return model


def model_unload() -> None:
    """Forget the loaded models and any pin; the next score loads what active.json says."""
    global _snapshot
    with _lock:
        _snapshot = None
        _boosters.clear()


def score(features: dict[str, object]) -> float | None:
    """The live model's fraud probability (0..1) for one feature vector, or None when no model is live."""
    live = _current().live
    return live.predict(features) if live is not None else None


def shadow_score(features: dict[str, object]) -> float | None:
    """The shadow model's score, recorded beside the live one and never acted on; None without a shadow."""
    shadow = _current().shadow
    return shadow.predict(features) if shadow is not None else None


def model_version() -> str:
    """The live model's version, "" when the score runs without a model."""
    live = _current().live
    return live.version if live is not None else ""


def shadow_version() -> str:
    shadow = _current().shadow
    return shadow.version if shadow is not None else ""


def _write_active(directory: Path, live: str | None, shadow: str | None) -> None:
    global _snapshot
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{ACTIVE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"live": live, "shadow": shadow}) + "\n", encoding="utf-8")
    os.replace(tmp, directory / ACTIVE_FILE)
    with _lock:
        _snapshot = None  # this process sees the switch at once; others within RECHECK_SECONDS


def _require(directory: Path, version: str) -> None:
    if version not in model_versions(directory):
        raise ValueError(f"no installed risk model {version!r} in {directory}")


def model_promote(version: str) -> dict[str, str | None]:
    """Make `version` the live model (it leaves the shadow slot if it was there); returns active.json."""
    directory = models_dir()
    _require(directory, version)
    active = model_active(directory)
    shadow = active["shadow"] if active["shadow"] != version else None
    _write_active(directory, version, shadow)
    return {"live": version, "shadow": shadow}


def model_shadow(version: str | None) -> dict[str, str | None]:
    """Run `version` in shadow beside the live model (None: no shadow); returns active.json."""
    directory = models_dir()
    active = model_active(directory)
    if version is not None:
        _require(directory, version)
        if version == active["live"]:
            raise ValueError(f"{version} is the live model; it cannot also be its shadow")
    live = active["live"]
    if live is None and _stamp(directory) is None:
        versions = [v for v in model_versions(directory) if v != version]
        live = versions[-1] if versions else None  # keep what was implicitly live (the newest) live
    _write_active(directory, live, version)
    return {"live": live, "shadow": version}
