"""Cursor pagination, newest first: a page is "after this row", so inserts while a client walks the list neither
repeat nor skip rows, and page 1,000 costs what page 1 does (an index range, no OFFSET)."""

from __future__ import annotations

import base64
from collections.abc import Callable

from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from settlement.contracts import Page


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


class KeysetNewestFirst(NewestFirst):
    """The same pages and cursors' shape for lists read through another app's facade, which pages by row id
    (settlement.contracts.Page) and hands back no queryset. The cursor is opaque: base64 of "before" or "after" a
    row's id."""

    def page_of(self, request, read: Callable[..., Page], key: Callable[[object], int]) -> list:
        """Read one page: `read(before=, after=, limit=)`; `key(item)` is an item's id, for the next cursors."""
        self.request, self.base_url = request, request.build_absolute_uri()
        limit = self.get_page_size(request)
        before = after = None
        given = request.query_params.get(self.cursor_query_param)
        if given is not None:
            try:
                direction, _sep, row_id = base64.urlsafe_b64decode(given.encode("ascii")).decode("ascii").partition(":")
                position = int(row_id)
            except (ValueError, UnicodeError):
                raise NotFound(self.invalid_cursor_message) from None
            if direction not in ("before", "after") or position < 0 or not row_id.isdigit():
                raise NotFound(self.invalid_cursor_message)
            before, after = (position, None) if direction == "before" else (None, position)
        page = read(before=before, after=after, limit=limit)
        items = list(page.items)
        self._next = f"before:{key(items[-1])}" if items and page.has_older else None
        self._previous = f"after:{key(items[0])}" if items and page.has_newer else None
        return items

    def _link(self, position: str | None) -> str | None:
        if position is None:
            return None
        return replace_query_param(
            self.base_url, self.cursor_query_param, base64.urlsafe_b64encode(position.encode()).decode()
        )

    def get_next_link(self) -> str | None:
        return self._link(self._next)

    def get_previous_link(self) -> str | None:
        return self._link(self._previous)
