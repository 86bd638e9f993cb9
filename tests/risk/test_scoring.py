from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from risk import scoring
from risk.schema import model_row
from risk.training.generator import TrafficMix
from risk.training.train import model_train

SMALL = TrafficMix(rows=3_000)


def _holdout(result, n=20):
    return [json.loads(line) for line in result.holdout_path.read_text().splitlines()[:n]]


def test_without_a_model_the_score_is_none():
    assert scoring.model_load() is None
    row = {"amount_minor": 100}
    assert scoring.score(row) is None
    assert scoring.shadow_score(row) is None
    assert scoring.model_version() == ""


def test_the_newest_model_scores_a_row_with_a_probability():
    model_train(SMALL, seed=1, rounds=10)
    newest = model_train(SMALL, seed=2, rounds=10)
    rows = _holdout(newest)

    assert scoring.model_version() == newest.version
    for row in rows:
        value = scoring.score(row)
        assert isinstance(value, float)
        assert 0.0 <= value <= 1.0
        assert value == pytest.approx(row["model_score"], abs=1e-6)
    assert scoring.shadow_score(rows[0]) is None


def test_the_model_is_loaded_once_per_process():
    result = model_train(SMALL, seed=1, rounds=10)
    row = _holdout(result, 1)[0]
    first = scoring.score(row)
    loaded = scoring.model_load()

    result.model_path.unlink()  # a second load would now fail: the booster in memory still answers
    assert scoring.score(row) == first
    assert scoring._current().live is loaded


def test_scoring_from_threads_shares_one_model():
    result = model_train(SMALL, seed=1, rounds=10)
    rows = _holdout(result, 10)
    expected = [row["model_score"] for row in rows]
    barrier, outcomes = threading.Barrier(4), []

    def work():
        barrier.wait()
        outcomes.append([round(scoring.score(row), 6) for row in rows])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [expected] * 4
    assert len(scoring._boosters) == 1


def test_promote_and_shadow_switch_the_models(var_dir):
    old = model_train(SMALL, seed=1, rounds=10)
    new = model_train(SMALL, seed=2, rounds=10)
    row = _holdout(new, 1)[0]
    active_file = var_dir / "risk" / "models" / "active.json"

    assert scoring.model_promote(old.version) == {"live": old.version, "shadow": None}
    assert scoring.model_version() == old.version
    assert scoring.shadow_score(row) is None

    assert scoring.model_shadow(new.version) == {"live": old.version, "shadow": new.version}
    assert json.loads(active_file.read_text()) == {"live": old.version, "shadow": new.version}
    assert scoring.model_version() == old.version
    assert scoring.shadow_version() == new.version
    assert scoring.shadow_score(row) == pytest.approx(row["model_score"], abs=1e-6)
    assert scoring.score(row) != scoring.shadow_score(row)

    assert scoring.model_promote(new.version) == {"live": new.version, "shadow": None}
    assert scoring.model_version() == new.version
    assert scoring.score(row) == pytest.approx(row["model_score"], abs=1e-6)
    assert scoring.shadow_score(row) is None


def test_unknown_or_live_versions_are_refused_and_nothing_changes(var_dir):
    live = model_train(SMALL, seed=1, rounds=10)
    scoring.model_promote(live.version)
    active_file = var_dir / "risk" / "models" / "active.json"
    before = active_file.read_text()

    with pytest.raises(ValueError):
        scoring.model_promote("20990101-000000-0000000")
    with pytest.raises(ValueError):
        scoring.model_shadow("20990101-000000-0000000")
    with pytest.raises(ValueError):
        scoring.model_shadow(live.version)
    assert active_file.read_text() == before
    assert scoring.model_version() == live.version


def test_a_promotion_by_another_process_is_seen(var_dir, monkeypatch):
    old = model_train(SMALL, seed=1, rounds=10)
    new = model_train(SMALL, seed=2, rounds=10)
    scoring.model_promote(old.version)
    assert scoring.model_version() == old.version

    # another process rewrites active.json; this one notices at its next check
    (var_dir / "risk" / "models" / "active.json").write_text(json.dumps({"live": new.version, "shadow": None}))
    monkeypatch.setattr(scoring, "RECHECK_SECONDS", 0.0)
    assert scoring.model_version() == new.version


def test_a_model_trained_on_other_features_is_not_used():
    result = model_train(SMALL, seed=1, rounds=10)
    meta = json.loads(result.meta_path.read_text())
    meta["features"] = meta["features"][:-1]
    result.meta_path.write_text(json.dumps(meta))

    assert scoring.score(_holdout(result, 1)[0]) is None
    assert scoring.model_version() == ""


def test_model_load_with_a_path_pins_that_model(var_dir):
    old = model_train(SMALL, seed=1, rounds=10)
    new = model_train(SMALL, seed=2, rounds=10)
    scoring.model_promote(new.version)

    assert scoring.model_load(old.model_path).version == old.version
    assert scoring.model_version() == old.version
    scoring.model_unload()
    assert scoring.model_version() == new.version
    with pytest.raises(FileNotFoundError):
        scoring.model_load(var_dir / "nothing.txt")


def test_the_single_row_fast_path_gives_what_booster_predict_gives():
    result = model_train(SMALL, seed=1, rounds=10)
    model = scoring.model_load()
    assert model.single_row is not None
    rows = _holdout(result, 50)
    public = model.booster.predict(np.array([model_row(row) for row in rows]))
    assert [model.predict(row) for row in rows] == pytest.approx(list(public), abs=1e-12)


def test_without_the_fast_path_booster_predict_answers(monkeypatch):
    class Unavailable:
        def __init__(self, booster):
            raise AttributeError("no LGBM_BoosterPredictForMatSingleRowFastInit in this build")

    monkeypatch.setattr(scoring, "_SingleRow", Unavailable)
    result = model_train(SMALL, seed=1, rounds=10)
    row = _holdout(result, 1)[0]
    assert scoring.model_load().single_row is None
    assert scoring.score(row) == pytest.approx(row["model_score"], abs=1e-6)
