"""The buyer's words for why a payment attempt was declined, from the provider's reason code.

Codes come from payments (PaymentView.decline_code): Stripe's decline and error codes, WeChat Pay's PAYERROR,
the bank gateway's DECLINED. A code not listed here gets the generic sentence: a provider's raw word is for
operators and never reaches the buyer. Imports nothing from payments.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

GENERIC = _("The payment was declined by your bank or card issuer.")
_BANK_DECLINED = _("Your bank declined the payment.")

DECLINE_MESSAGES = {
    "insufficient_funds": _("Your card has insufficient funds."),
    "expired_card": _("Your card has expired."),
    "incorrect_cvc": _("The security code was wrong."),
    "invalid_cvc": _("The security code was wrong."),
    "incorrect_number": _("The card number was wrong."),
    "invalid_number": _("The card number was wrong."),
    "generic_decline": _BANK_DECLINED,
    "card_declined": _BANK_DECLINED,
    "do_not_honor": _BANK_DECLINED,
}


def decline_message(code: str) -> str:
    """Plain, translated words for a decline reason code; the generic sentence for any code not known."""
    return str(DECLINE_MESSAGES.get(code, GENERIC))
