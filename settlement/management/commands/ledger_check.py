"""`manage.py ledger_check`: run the ledger's invariant check, store the run, print a summary; exit 1 on drift."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from settlement.checks import ledger_check_run


class Command(BaseCommand):
    help = "Check the ledger's invariants (balances, zero sums, one posting per paid trade and per final refund)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--suspense-days",
            type=int,
            default=None,
            help="list suspense older than this many days (default: SETTLEMENT_SUSPENSE_MAX_DAYS, 7)",
        )

    def handle(self, *args, suspense_days: int | None = None, **options) -> None:
        run = ledger_check_run(suspense_days=suspense_days)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items()))
        self.stdout.write(f"ledger check #{run.pk}: checked {counts}")
        for problem in run.problems:
            detail = " ".join(f"{k}={v}" for k, v in problem.items() if k != "code")
            self.stdout.write(f"  DRIFT {problem['code']}: {detail}")
        for item in run.stale_suspense:
            self.stdout.write(
                f"  suspense {item['key']} {item['amount_minor']} {item['currency']} (minor units), "
                f"{item['age_days']} days old"
            )
        for notice in run.notices:
            if notice["code"] == "calendar_uncovered":
                self.stdout.write(
                    f"  NOTICE the holiday file {notice['file']} does not declare {notice['year']} "
                    f"({notice['held_releases']} held release(s) due then): add `year {notice['year']}` and its days"
                )
        if not run.ok:
            raise CommandError(f"{run.problem_count} problem(s) found", returncode=1)
        self.stdout.write(f"ok: 0 problems, {run.stale_suspense_count} suspense past its time")
