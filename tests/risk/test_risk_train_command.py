from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from risk import scoring

pytestmark = pytest.mark.django_db  # the replay reads the live rule set


def _run(*args: str) -> tuple[str, dict]:
    out = io.StringIO()
    call_command("risk_train", "--rows", "8000", "--trees", "40", *args, stdout=out)
    text = out.getvalue()
    meta_path = Path(re.search(r"^metadata: (.+)$", text, re.M).group(1))
    return text, json.loads(meta_path.read_text())


def test_the_command_prints_the_holdout_figures_and_promotes_the_first_model(var_dir):
    text, meta = _run("--seed", "3")
    m = meta["metrics"]
    version = meta["version"]
    directory = var_dir / "risk" / "models"

    assert f"risk model {version}: trained in " in text
    assert f"hold-out: {m['rows']} checkouts, {m['fraud_rows']} fraud" in text
    auc = float(re.search(r"^ROC AUC: (\d\.\d{4})$", text, re.M).group(1))
    assert auc == round(m["roc_auc"], 4)
    assert auc > 0.9
    assert (
        f"review (score >= 0.50): precision {m['review']['precision']:.4f}, recall {m['review']['recall']:.4f}" in text
    )
    assert f"block (score >= 0.90): precision {m['block']['precision']:.4f}, recall {m['block']['recall']:.4f}" in text
    assert (
        f"model only, at review: fraud stopped {m['review']['fraud_stopped'] * 100:.2f} %, "
        f"good touched {m['review']['good_touched'] * 100:.2f} %" in text
    )
    assert f"model: {directory / f'risk-{version}.txt'}" in text
    assert f"hold-out: {directory / f'risk-{version}-holdout.jsonl'}" in text
    assert f"live: {version} (shadow: none)" in text
    # The hold-out replayed through the whole engine (the default rules, no rule set being live, and this model).
    replayed = re.search(
        r"full engine \(rules defaults \+ this model\) on the hold-out: fraud stopped ([\d.]+) %", text
    )
    assert replayed and float(replayed.group(1)) > 50
    assert meta["seed"] == 3
    assert meta["generator"]["rows"] == 8000
    assert scoring.model_active() == {"live": version, "shadow": None}


def test_later_models_go_to_shadow_unless_promoted():
    _, first = _run("--seed", "3")
    text, second = _run("--seed", "4", "--fraud-share", "0.2")
    assert second["generator"]["fraud_share"] == 0.2
    assert f"shadow: {second['version']} (live: {first['version']})" in text
    assert scoring.model_active() == {"live": first["version"], "shadow": second["version"]}

    text, third = _run("--seed", "5", "--promote")
    assert f"live: {third['version']} (shadow: {second['version']})" in text
    assert scoring.model_active() == {"live": third["version"], "shadow": second["version"]}
    assert scoring.model_version() == third["version"]


def test_shadow_first_leaves_nothing_live():
    text, meta = _run("--seed", "3", "--shadow")
    assert f"shadow: {meta['version']} (live: none)" in text
    assert scoring.model_active() == {"live": None, "shadow": meta["version"]}
    assert scoring.score({}) is None


def test_shadow_and_promote_together_are_refused(var_dir):
    with pytest.raises(CommandError):
        call_command("risk_train", "--rows", "500", "--shadow", "--promote", stdout=io.StringIO())
    assert not (var_dir / "risk").exists()
