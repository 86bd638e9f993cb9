"""The only risk functions other apps call. Contracts in, contracts out (risk.contracts)."""

from risk.challenges import (
    challenge_answer,
    challenge_consume,
    challenge_image,
    challenge_kind,
    challenge_start,
)
from risk.defaults import ruleset_defaults_publish
from risk.selectors import assessments_for_order, assessments_latest_for_orders, decisions_by_hour
from risk.services import checkout_record, failure_record, list_entry_add, risk_assess, risk_challenge_kind

__all__ = [
    "assessments_for_order",
    "assessments_latest_for_orders",
    "challenge_answer",
    "challenge_consume",
    "challenge_image",
    "challenge_kind",
    "challenge_start",
    "checkout_record",
    "decisions_by_hour",
    "failure_record",
    "list_entry_add",
    "risk_assess",
    "risk_challenge_kind",
    "ruleset_defaults_publish",
]
