"""The parties lower layers may point a ForeignKey at: merchants and the agents they sign up under.

The platform is the third party of every split; it is one, so it has no row (settlement names it by a constant).
Must not import any app.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice


def agent_max_depth() -> int:
    return int(getattr(settings, "SETTLEMENT_AGENT_MAX_DEPTH", 3))


class Agent(models.Model):
    """A reseller who brings merchants and earns a commission on their sales; agents form a tree.

    `depth` is 1 for a top agent and its parent's depth + 1 below it; a chain deeper than
    SETTLEMENT_AGENT_MAX_DEPTH is refused (clean() and core.parties.agent_create). It is stored so a split reads
    a merchant's chain without walking an unbounded tree, and the database checks it agrees with `parent`.
    """

    name = models.CharField(_("name"), max_length=120)
    parent = models.ForeignKey(
        "self",
        verbose_name=_("parent agent"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
    )
    depth = models.PositiveSmallIntegerField(_("depth"), default=1, editable=False)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(parent__isnull=True, depth=1) | models.Q(parent__isnull=False, depth__gt=1),
                name="core_agent_depth_matches_parent",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        self.depth = self.depth_under(self.parent)
        if self.pk and self.parent_id is not None:
            ancestor = self.parent
            while ancestor is not None:
                if ancestor.pk == self.pk:
                    raise ValidationError({"parent": _("An agent cannot be placed under itself or its own sub-agent.")})
                ancestor = ancestor.parent
        if self.pk and Agent.objects.filter(pk=self.pk).exclude(parent_id=self.parent_id).exists():
            if self.children.exists():
                raise ValidationError({"parent": _("An agent with sub-agents cannot be moved to another parent.")})

    @staticmethod
    def depth_under(parent: "Agent | None") -> int:
        """The depth an agent placed under `parent` has; ValidationError when it would exceed the setting."""
        depth = 1 if parent is None else parent.depth + 1
        limit = agent_max_depth()
        if depth > limit:
            message = _("Agent chains are at most %(limit)d levels deep.") % {"limit": limit}
            raise ValidationError({"parent": ValidationError(message, code="agent_too_deep")})
        return depth


class Merchant(models.Model):
    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), unique=True)
    email = models.EmailField(_("contact email"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    # The agent this merchant signed up under: its chain earns commissions on the sales. Not in admin forms yet
    # (editable=False): the settlement admin slice adds it with its translations.
    agent = models.ForeignKey(
        Agent,
        verbose_name=_("agent"),
        null=True,
        blank=True,
        editable=False,
        on_delete=models.PROTECT,
        related_name="merchants",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant")
        verbose_name_plural = _("merchants")

    def __str__(self) -> str:
        return self.name


class AuditEvent(models.Model):
    """Who did what to which object in the back office. Rows are never changed or deleted."""

    actor = models.CharField(_("actor"), max_length=150)
    action = models.CharField(_("action"), max_length=64, db_index=True)
    target = models.CharField(_("target"), max_length=200, db_index=True)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    created_at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target}"


class AuthenticatorDevice(TOTPDevice):
    """An operator's authenticator app (django-otp's TOTP device), named for the admin in both languages."""

    class Meta:
        proxy = True
        verbose_name = _("authenticator app")
        verbose_name_plural = _("authenticator apps")


class RecoveryCodes(StaticDevice):
    """An operator's one-time recovery codes (django-otp's static device)."""

    class Meta:
        proxy = True
        verbose_name = _("recovery codes")
        verbose_name_plural = _("recovery codes")
