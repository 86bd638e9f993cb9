"""The checkout confirmation risk asks for: a code mailed to the buyer, or a captcha. Nothing is reserved until
it is passed; then the checkout goes on once, and the buyer lands on the pay page like any other."""

from __future__ import annotations

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from cardshop.services import checkout
from cardshop.views.access import grant_order
from core.errors import DomainError


class ConfirmForm(forms.Form):
    answer = forms.CharField(label=gettext_lazy("Code"), max_length=12, strip=True)


@never_cache
@require_http_methods(["GET", "POST"])
def checkout_confirm(request: HttpRequest, token: str) -> HttpResponse:
    kind = checkout.checkout_challenge_kind(token=token)
    form = ConfirmForm(request.POST or None)
    status = 200
    if not kind:
        return render(request, "cardshop/challenge.html", {"expired": True}, status=410)
    if request.method == "POST" and form.is_valid():
        try:
            order = checkout.checkout_confirm(token=token, answer=form.cleaned_data["answer"])
        except checkout.ChallengeFailed as exc:
            if exc.attempts_left:
                form.add_error(
                    "answer",
                    ngettext(
                        "That is not right. %(n)d try left.", "That is not right. %(n)d tries left.", exc.attempts_left
                    )
                    % {"n": exc.attempts_left},
                )
                status = 400
            else:
                return render(request, "cardshop/challenge.html", {"expired": True}, status=410)
        except DomainError as exc:
            form.add_error(None, exc.message)
            status = 400
        else:
            grant_order(request, order.order_no)
            return redirect("order_pay", order_no=order.order_no)
    context = {
        "form": form,
        "kind": kind,
        "captcha_url": reverse("checkout_confirm_captcha", args=[token]) if kind == "captcha" else "",
        "prompt": _("Type the characters in the picture.")
        if kind == "captcha"
        else _("We sent a 6-digit code to your email. Enter it to confirm your order."),
    }
    return render(request, "cardshop/challenge.html", context, status=status)


@never_cache
@require_GET
def checkout_confirm_captcha(request: HttpRequest, token: str) -> HttpResponse:
    image = checkout.checkout_captcha_image(token=token)
    if not image:
        raise Http404
    return HttpResponse(image, content_type="image/png")
