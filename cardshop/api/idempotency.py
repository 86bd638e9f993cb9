"""`Idempotency-Key` on POST: the first answer for a key is kept 24 hours and replayed to a retry; the same key
with another request is a 409 `idempotency_error`, and so is a duplicate sent while the first still runs."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from cardshop.api.errors import Replayed
from cardshop.services.merchant_api import IdempotentAnswer, idempotency_claim, idempotency_finish, request_fingerprint

HEADER = "Idempotency-Key"


class IdempotentPosts:
    """A view mixin: claims the key after authentication, throttling and permissions, keeps the answer after."""

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None:
            return
        fingerprint = request_fingerprint(method=request.method, path=request.get_full_path(), data=request.data)
        claimed = idempotency_claim(merchant_id=request.user.merchant_id, key=key, fingerprint=fingerprint)
        if isinstance(claimed, IdempotentAnswer):
            raise Replayed(claimed)
        request.idempotency_record = claimed

    def finalize_response(self, request: Request, response: Response, *args, **kwargs) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        record = getattr(request, "idempotency_record", None)
        if record is not None:
            request.idempotency_record = None
            idempotency_finish(record=record, status_code=response.status_code, body=response.data)
        return response
