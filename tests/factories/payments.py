import json
import secrets

import factory

from payments.models import ChannelAccount


class EpayAccountFactory(factory.django.DjangoModelFactory):
    """An epay channel account with a fresh pid and key (register them with the simulator)."""

    class Meta:
        model = ChannelAccount

    code = "epay"
    name = "epay test"
    merchant_no = factory.LazyFunction(lambda: str(10000 + secrets.randbelow(89999)))
    base_url = "http://127.0.0.1:9"
    credentials = factory.LazyFunction(lambda: json.dumps({"key": secrets.token_hex(16)}))
