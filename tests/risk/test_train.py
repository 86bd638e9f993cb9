from __future__ import annotations

import hashlib
import json
import re

import lightgbm as lgb
import numpy as np

from risk.schema import FEATURE_NAMES, MODEL_FEATURES, model_row
from risk.training.generator import TrafficMix
from risk.training.train import model_train, models_dir

SMALL = TrafficMix(rows=8_000)


def test_training_writes_a_versioned_model_its_metadata_and_the_holdout(var_dir):
    result = model_train(SMALL, seed=3, rounds=40)

    directory = var_dir / "risk" / "models"
    assert models_dir() == directory
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{7}", result.version)
    assert result.model_path == directory / f"risk-{result.version}.txt"
    assert result.meta_path == directory / f"risk-{result.version}.json"
    assert result.holdout_path == directory / f"risk-{result.version}-holdout.jsonl"
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [result.model_path.name, result.meta_path.name, result.holdout_path.name]
    )

    meta = json.loads(result.meta_path.read_text())
    assert meta["version"] == result.version
    assert meta["features"] == list(MODEL_FEATURES)
    assert meta["seed"] == 3
    assert meta["rounds"] == 40
    assert meta["generator"]["rows"] == 8_000
    assert meta["generator"]["fraud_share"] == 0.15
    assert meta["generator"]["attack_shares"]["hoarding"] == 0.30
    assert meta["model_sha256"] == hashlib.sha256(result.model_path.read_bytes()).hexdigest()
    assert result.version.endswith(meta["model_sha256"][:7])
    assert meta["train_rows"] + meta["metrics"]["rows"] == 8_000
    assert meta["thresholds"] == {"review": 0.5, "block": 0.9}
    metrics = meta["metrics"]
    assert metrics == result.metrics
    assert metrics["roc_auc"] > 0.9
    assert metrics["review"]["threshold"] == 0.5
    assert metrics["block"]["threshold"] == 0.9
    assert 0.0 <= metrics["block"]["recall"] <= metrics["review"]["recall"] <= 1.0
    assert metrics["review"]["recall"] == metrics["review"]["fraud_stopped"]

    lines = result.holdout_path.read_text().splitlines()
    assert len(lines) == metrics["rows"] == 1_600
    holdout = [json.loads(line) for line in lines]
    assert sum(row["label"] for row in holdout) == metrics["fraud_rows"]
    assert all(
        set(FEATURE_NAMES) <= set(row) and {"label", "pattern", "at", "model_score"} <= set(row) for row in holdout
    )

    booster = lgb.Booster(model_file=str(result.model_path))
    assert booster.num_trees() == 40
    assert booster.feature_name() == list(MODEL_FEATURES)
    again = booster.predict(np.array([model_row(row) for row in holdout[:50]]))
    assert np.allclose(again, [row["model_score"] for row in holdout[:50]], atol=1e-6)


def test_the_thresholds_come_from_settings(settings):
    settings.RISK_SCORE_REVIEW = 0.3
    settings.RISK_SCORE_BLOCK = 0.7
    result = model_train(TrafficMix(rows=3_000), seed=4, rounds=10)
    meta = json.loads(result.meta_path.read_text())
    assert meta["thresholds"] == {"review": 0.3, "block": 0.7}
    assert (result.metrics["review"]["threshold"], result.metrics["block"]["threshold"]) == (0.3, 0.7)


def test_same_data_and_seed_give_the_same_model(tmp_path):
    first = model_train(TrafficMix(rows=3_000), seed=5, rounds=10, directory=tmp_path / "a")
    second = model_train(TrafficMix(rows=3_000), seed=5, rounds=10, directory=tmp_path / "b")
    assert first.version.split("-")[-1] == second.version.split("-")[-1]
    assert first.metrics == second.metrics
