"""Cursor pagination, newest first: a page is "after this row", so inserts while a client walks the list neither
repeat nor skip rows, and page 1,000 costs what page 1 does (an index range, no OFFSET)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response


class NewestFirst(CursorPagination):
    ordering = "-pk"
    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100

    def get_page_size(self, request) -> int:
        """`limit` is 1 to 100; anything else is refused (naming it), not silently replaced by the default."""
        given = request.query_params.getlist(self.page_size_query_param)
        if not given:
            return self.page_size
        if len(given) > 1 or not given[0].isascii() or not given[0].isdigit() or not 1 <= int(given[0]) <= 100:
            raise ValidationError({"limit": [_("limit is a whole number from 1 to 100.")]})
        return int(given[0])

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size, "default": 20}
        return parameters

    def get_paginated_response(self, data) -> Response:
        next_url = self.get_next_link()
        return Response(
            {
                "object": "list",
                "data": data,
                "has_more": next_url is not None,
                "next": next_url,
                "previous": self.get_previous_link(),
            }
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["object", "data", "has_more", "next", "previous"],
            "properties": {
                "object": {"type": "string", "enum": ["list"]},
                "data": schema,
                "has_more": {"type": "boolean"},
                "next": link,
                "previous": link,
            },
        }
