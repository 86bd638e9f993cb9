"""Train the learned risk score on generated traffic, print its hold-out figures, and install it.

The first model trained goes live when none is live; later ones run in shadow (scored beside the live model,
never acted on) until promoted, here with --promote or later with `risk.scoring.model_promote`.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from risk import scoring
from risk.training.generator import TrafficMix
from risk.training.replay import holdout_replay
from risk.training.train import DEFAULT_ROUNDS, model_train


def _pct(value: float) -> str:
    return f"{value * 100:.2f} %"


class Command(BaseCommand):
    help = "Train the risk model on generated traffic, print hold-out figures, install it live or in shadow."

    def add_arguments(self, parser):
        defaults = TrafficMix()
        parser.add_argument("--rows", type=int, default=defaults.rows, help="checkouts generated (all)")
        parser.add_argument("--seed", type=int, default=13)
        parser.add_argument("--fraud-share", type=float, default=defaults.fraud_share)
        parser.add_argument("--trees", type=int, default=DEFAULT_ROUNDS, help="boosting rounds")
        slot = parser.add_mutually_exclusive_group()
        slot.add_argument("--shadow", action="store_true", help="install in shadow, even when none is live")
        slot.add_argument("--promote", action="store_true", help="install live")

    def handle(self, *args, **options):
        try:
            mix = TrafficMix(rows=options["rows"], fraud_share=options["fraud_share"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        result = model_train(mix, seed=options["seed"], rounds=options["trees"])
        m = result.metrics
        review, block = m["review"], m["block"]
        out = self.stdout.write
        out(f"risk model {result.version}: trained in {result.seconds:.1f} s")
        out(f"hold-out: {m['rows']} checkouts, {m['fraud_rows']} fraud")
        out(f"ROC AUC: {m['roc_auc']:.4f}")
        for name, at in (("review", review), ("block", block)):
            out(f"{name} (score >= {at['threshold']:.2f}): precision {at['precision']:.4f}, recall {at['recall']:.4f}")
        out(
            f"model only, at review: fraud stopped {_pct(review['fraud_stopped'])}, "
            f"good touched {_pct(review['good_touched'])}"
        )
        one = m["at_one_percent_good"]
        out(f"at 1 % good touched (score >= {one['threshold']:.3f}): fraud stopped {_pct(one['fraud_stopped'])}")
        patterns = ", ".join(f"{p} {_pct(v['flagged_at_review'])}" for p, v in m["per_pattern"].items())
        out(f"flagged at review by pattern: {patterns}")
        model = scoring.model_load(result.model_path)  # this one, whatever is live
        try:
            replay = holdout_replay(result.holdout_path, model.predict)
        finally:
            scoring.model_unload()
        out(
            f"full engine (rules {replay.rules_from} + this model) on the hold-out: fraud stopped "
            f"{_pct(replay.fraud_stopped)}, good touched {_pct(replay.good_touched)} "
            f"({'targets met' if replay.targets_met else 'TARGETS MISSED'}: >= 90 % stopped, <= 1 % touched)"
        )
        out(f"model: {result.model_path}")
        out(f"metadata: {result.meta_path}")
        out(f"hold-out: {result.holdout_path}")

        live = scoring.model_active()["live"]
        if live is None and not (scoring.models_dir() / scoring.ACTIVE_FILE).exists():
            older = [v for v in scoring.model_versions() if v != result.version]
            live = older[-1] if older else None  # without active.json the newest model before this one was live
        if live == result.version:  # the same model, trained again within the same second
            out(self.style.SUCCESS(f"live: {live} (unchanged)"))
        elif options["promote"] or (live is None and not options["shadow"]):
            active = scoring.model_promote(result.version)
            out(self.style.SUCCESS(f"live: {active['live']} (shadow: {active['shadow'] or 'none'})"))
        else:
            active = scoring.model_shadow(result.version)
            out(self.style.SUCCESS(f"shadow: {active['shadow']} (live: {active['live'] or 'none'})"))
