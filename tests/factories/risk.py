import factory

from risk.models import Assessment


class AssessmentFactory(factory.django.DjangoModelFactory):
    """A stored assessment; `created_at=` puts it at that moment (auto_now_add otherwise)."""

    class Meta:
        model = Assessment

    stage = "checkout"
    decision = "allow"
    currency = "CNY"
    reasons = factory.LazyFunction(list)
    features = factory.LazyFunction(dict)
    created_at = None

    @classmethod
    def _create(cls, model_class, *args, created_at=None, **kwargs):
        assessment = super()._create(model_class, *args, **kwargs)
        if created_at is not None:
            Assessment.objects.filter(pk=assessment.pk).update(created_at=created_at)
            assessment.created_at = created_at
        return assessment
