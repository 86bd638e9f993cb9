"""The OpenAPI document drf-spectacular builds: the bearer key, the Idempotency-Key header on every POST, and the
error object on every status the API can answer with (schemathesis checks each answer against it)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "cardshop.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A merchant API key: ck_live_... or ck_test_..."}


class ErrorDetailSerializer(serializers.Serializer):
    type = serializers.ChoiceField(
        choices=[
            "invalid_request_error",
            "authentication_error",
            "permission_error",
            "idempotency_error",
            "rate_limit_error",
            "api_error",
        ]
    )
    code = serializers.CharField()
    message = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    confirm_url = serializers.URLField(
        required=False, help_text="Only with code challenge_required: where the buyer confirms the order."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# Every endpoint can refuse a request like this; POSTs can also meet a used Idempotency-Key (409).
_ERRORS = {"400", "401", "403", "404", "429"}


class ApiAutoSchema(AutoSchema):
    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if self.method == "POST":
            parameters.append(
                OpenApiParameter(
                    "Idempotency-Key",
                    {"type": "string", "minLength": 1, "maxLength": 255},
                    OpenApiParameter.HEADER,
                    description="Any string up to 255 characters; a retry with the same key gets the first answer.",
                )
            )
        return parameters

    def _get_response_bodies(self, direction="response"):
        bodies = super()._get_response_bodies(direction)
        codes = _ERRORS | ({"409"} if self.method in ("POST", "PATCH") else set())
        for code in sorted(codes - set(bodies)):
            bodies[code] = self._get_response_for_code(ErrorSerializer, code, direction=direction)
        return bodies


class WholeListSchema(ApiAutoSchema):
    """For a list that answers one object holding all its rows (no pages): drf-spectacular would wrap that object
    in an array, as it does every `list` action without a paginator."""

    def _is_list_view(self, serializer=None) -> bool:
        return False
