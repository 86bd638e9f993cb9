"""The only risk functions other apps call. Contracts in, contracts out (risk.contracts)."""

from risk.services import assessment_link, checkout_record, failure_record, risk_assess

__all__ = ["assessment_link", "checkout_record", "failure_record", "risk_assess"]
