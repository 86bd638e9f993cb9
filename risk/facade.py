"""The only risk functions other apps call. Contracts in, contracts out (risk.contracts)."""

from risk.challenges import (
    challenge_answer,
    challenge_consume,
    challenge_image,
    challenge_kind,
    challenge_start,
)
from risk.defaults import ruleset_defaults_publish
from risk.services import checkout_record, failure_record, list_entry_add, risk_assess, risk_challenge_kind

__all__ = [
    "challenge_answer",
    "challenge_consume",
    "challenge_image",
    "challenge_kind",
    "challenge_start",
    "checkout_record",
    "failure_record",
    "list_entry_add",
    "risk_assess",
    "risk_challenge_kind",
    "ruleset_defaults_publish",
]
