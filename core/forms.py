"""Form fields shared by the back office."""

from django import forms
from unfold.widgets import UnfoldAdminPasswordWidget


class WriteOnlySecretField(forms.CharField):
    """A secret an operator may set but never read back: rendered empty; empty input keeps the stored value
    (the form's clean_<field> returns the instance's value in that case)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", UnfoldAdminPasswordWidget(render_value=False))
        super().__init__(**kwargs)

    def has_changed(self, initial, data) -> bool:
        # Changed only when something was typed: the empty rendering is not an edit of the stored value.
        return bool(data)
