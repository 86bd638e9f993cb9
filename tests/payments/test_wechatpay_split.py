"""WeChat Pay profit sharing (分账) through the adapter against the simulator over real HTTP: bind, split, query,
return of a share after a refund; idempotency by out_order_no / out_return_no; the 30 % ratio; forged answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core.money import Money
from payments.channels.base import (
    AccountConfig,
    Capability,
    CreateOrder,
    RefundRequest,
    RefundState,
    Retryable,
    SplitReceiver,
    SplitRequest,
    SplitReturnRequest,
    SplitState,
    Terminal,
    Unknown,
)
from payments.channels.wechatpay import signing
from payments.channels.wechatpay.adapter import WechatPayAdapter
from payments.simulators.wechatpay import WechatPaySimulator

AGENT_MCHID = "1900000109"  # a merchant receiver (returns are possible from it)
AGENT_NAME = "示例代理科技有限公司"
PERSON_OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


class Inbox:
    """The shop's notify endpoint: keeps every callback the simulator posts."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify/wechatpay"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sim() -> Iterator[WechatPaySimulator]:
    s = WechatPaySimulator().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    yield box
    box.close()


@pytest.fixture(autouse=True)
def _clean(sim: WechatPaySimulator) -> Iterator[None]:
    sim.faults.reset()
    yield
    sim.faults.reset()
    sim.faults.hang_seconds = 3.0
    sim.split_auto_settle = True
    sim.split_fail_accounts = {}


@pytest.fixture(scope="module")
def config(sim: WechatPaySimulator) -> AccountConfig:
    account = sim.account()
    return AccountConfig(
        account_id=12,
        code="wechatpay",
        merchant_no=account.merchant_no,
        base_url=account.base_url,
        currency="CNY",
        credentials=account.credentials,
    )


@pytest.fixture(scope="module")
def adapter(config: AccountConfig) -> WechatPayAdapter:
    a = WechatPayAdapter(config)
    a.split_bind(_agent(0))
    a.split_bind(_person(0))
    return a


_seq = iter(range(10**6))


def _agent(fen: int, description: str = "代理佣金") -> SplitReceiver:
    return SplitReceiver(AGENT_MCHID, "MERCHANT_ID", AGENT_NAME, Money(fen, "CNY"), description)


def _person(fen: int) -> SplitReceiver:
    return SplitReceiver(PERSON_OPENID, "PERSONAL_OPENID", "张三", Money(fen, "CNY"), "推广奖励")


def _paid(adapter: WechatPayAdapter, sim: WechatPaySimulator, inbox: Inbox, fen: int = 10_000, *, split: bool = True):
    """A trade created (splittable unless told), paid: (out_trade_no, transaction_id)."""
    out_trade_no = f"SPT20261203{next(_seq):08d}"
    adapter.create(
        CreateOrder(
            out_trade_no=out_trade_no,
            amount=Money(fen, "CNY"),
            subject="点卡",
            notify_url=inbox.url,
            return_url="",
            client_ip="127.0.0.1",
            method="wxpay",
            split=split,
        )
    )
    sim.pay(out_trade_no)
    return out_trade_no, sim.trade_for(out_trade_no)["provider_trade_no"]


def _split(trade: tuple[str, str], *receivers: SplitReceiver, finish: bool = True, no: str = "") -> SplitRequest:
    return SplitRequest(
        split_no=no or f"PS20261203{next(_seq):08d}",
        out_trade_no=trade[0],
        provider_trade_no=trade[1],
        receivers=receivers,
        finish=finish,
    )


def _executed(sim: WechatPaySimulator, split_no: str) -> int:
    return sum(1 for s in sim.split_log if s["out_order_no"] == split_no)


# ---- bind, split, settle ----------------------------------------------------------------------------------


def test_bind_sends_the_name_encrypted_and_binding_again_is_accepted(adapter, sim):
    adapter.split_bind(_agent(0))  # a second time: WeChat accepts it
    bound = sim.receivers()
    assert bound[("MERCHANT_ID", AGENT_MCHID)]["name"] == AGENT_NAME  # decrypted with the platform key
    assert bound[("MERCHANT_ID", AGENT_MCHID)]["relation_type"] == "PARTNER"
    assert bound[("PERSONAL_OPENID", PERSON_OPENID)]["name"] == "张三"


def test_a_merchant_receiver_is_bound_by_its_full_name(adapter):
    with pytest.raises(Terminal) as exc:
        adapter.split_bind(replace(_agent(0), name=""))
    assert exc.value.code == "no_receiver_name"


def test_split_two_receivers_with_finish_succeeds_once_settled_and_releases_the_rest(adapter, sim, inbox):
    sim.split_auto_settle = False
    trade = _paid(adapter, sim, inbox, 10_000)
    assert sim.trade_for(trade[0])["profit_sharing"] is True  # settle_info.profit_sharing went on the create
    request = _split(trade, _agent(2_000), _person(1_000))

    answer = adapter.split(request)

    assert (answer.status, answer.provider_status) == (SplitState.PENDING, "PROCESSING")
    assert answer.provider_split_no.startswith("3008")
    assert [(r.account, r.amount, r.status) for r in answer.receivers] == [
        (AGENT_MCHID, Money(2_000, "CNY"), SplitState.PENDING),
        (PERSON_OPENID, Money(1_000, "CNY"), SplitState.PENDING),
    ]
    ledger = sim.split_ledger(trade[0])
    assert (ledger["split"], ledger["frozen"], ledger["released"]) == (3_000, 7_000, 0)
    assert adapter.split_query(request).status == SplitState.PENDING

    callbacks_before = len(inbox.received)
    sim.settle_split(request.split_no, background=False)

    settled = adapter.split_query(request)
    assert (settled.status, settled.provider_status, settled.provider_split_no) == (
        SplitState.SUCCEEDED,
        "FINISHED",
        answer.provider_split_no,
    )
    # The merchant's own "解冻给分账方" line is not a share.
    assert [(r.account, r.amount, r.status) for r in settled.receivers] == [
        (AGENT_MCHID, Money(2_000, "CNY"), SplitState.SUCCEEDED),
        (PERSON_OPENID, Money(1_000, "CNY"), SplitState.SUCCEEDED),
    ]
    ledger = sim.split_ledger(trade[0])
    assert ledger["received"] == {AGENT_MCHID: 2_000, PERSON_OPENID: 1_000}
    assert (ledger["split"], ledger["frozen"], ledger["released"], ledger["finished"]) == (3_000, 0, 7_000, True)
    assert _executed(sim, request.split_no) == 1
    # One PROFITSHARING.SUCCESS callback per paid receiver, to the trade's notify_url, signed and encrypted.
    sent = inbox.received[callbacks_before:]
    assert len(sent) == 2
    key = signing.load_platform_key(sim.platform_public_key_pem())
    amounts = {}
    for headers, body in sent:
        assert signing.verify(
            key, headers["wechatpay-timestamp"], headers["wechatpay-nonce"], body, headers["wechatpay-signature"]
        )
        envelope = json.loads(body)
        assert envelope["event_type"] == "PROFITSHARING.SUCCESS"
        res = envelope["resource"]
        plain = signing.decrypt_resource(
            adapter._creds["apiv3_key"],
            nonce=res["nonce"],
            ciphertext_b64=res["ciphertext"],
            associated_data=res["associated_data"],
        )
        resource = json.loads(plain)
        assert (resource["out_order_no"], resource["transaction_id"]) == (request.split_no, trade[1])
        amounts[resource["receiver"]["account"]] = resource["receiver"]["amount"]
    assert amounts == {AGENT_MCHID: 2_000, PERSON_OPENID: 1_000}


def test_a_split_without_finish_keeps_the_rest_frozen_and_finishing_alone_releases_it(adapter, sim, inbox):
    trade = _paid(adapter, sim, inbox, 5_000)
    assert adapter.split(_split(trade, _agent(500), finish=False)).status == SplitState.PENDING
    assert adapter.split_query(_split(trade, _agent(500), finish=False, no="nope")) is None
    ledger = sim.split_ledger(trade[0])
    assert (ledger["received"], ledger["frozen"], ledger["released"]) == ({AGENT_MCHID: 500}, 4_500, 0)

    finished = adapter.split(_split(trade))  # no receiver, finish: 解冻剩余资金

    assert (finished.status, finished.receivers) == (SplitState.SUCCEEDED, ())
    ledger = sim.split_ledger(trade[0])
    assert (ledger["frozen"], ledger["released"], ledger["finished"]) == (0, 4_500, True)


def test_a_receiver_closed_by_wechat_reads_failed_with_its_reason(adapter, sim, inbox):
    sim.split_fail_accounts = {PERSON_OPENID: "RECEIVER_HIGH_RISK"}
    trade = _paid(adapter, sim, inbox, 10_000)
    request = _split(trade, _agent(1_000), _person(1_000))
    adapter.split(request)
    settled = adapter.split_query(request)
    assert settled.status == SplitState.FAILED
    assert [(r.account, r.status, r.failure_reason) for r in settled.receivers] == [
        (AGENT_MCHID, SplitState.SUCCEEDED, ""),
        (PERSON_OPENID, SplitState.FAILED, "RECEIVER_HIGH_RISK"),
    ]
    ledger = sim.split_ledger(trade[0])
    # The closed share stayed with the merchant and was released with the rest.
    assert (ledger["received"], ledger["split"], ledger["released"]) == ({AGENT_MCHID: 1_000}, 1_000, 9_000)


# ---- idempotency and lost answers ---------------------------------------------------------------------------


def test_the_same_split_no_twice_is_executed_once_with_the_same_answer(adapter, sim, inbox):
    trade = _paid(adapter, sim, inbox, 10_000)
    request = _split(trade, _agent(1_500), _person(500))
    first = adapter.split(request)
    second = adapter.split(request)
    assert second.provider_split_no == first.provider_split_no
    assert second.split_no == first.split_no == request.split_no
    assert [(r.account, r.amount) for r in second.receivers] == [(r.account, r.amount) for r in first.receivers]
    assert second.status == SplitState.SUCCEEDED  # settled at once in between; the same order either way
    assert _executed(sim, request.split_no) == 1
    assert sim.split_ledger(trade[0])["received"] == {AGENT_MCHID: 1_500, PERSON_OPENID: 500}


def test_a_timeout_is_unknown_and_the_query_finds_the_one_split(config, adapter, sim, inbox):
    trade = _paid(adapter, sim, inbox, 10_000)
    request = _split(trade, _agent(2_500))
    sim.faults.timeout, sim.faults.hang_seconds = 1, 1.5
    impatient = WechatPayAdapter(replace(config, timeouts=(1.0, 0.5)))

    with pytest.raises(Unknown) as exc:
        impatient.split(request)

    assert exc.value.code == "timeout"
    found = adapter.split_query(request)
    assert found is not None
    assert (found.status, [(r.account, r.amount) for r in found.receivers]) == (
        SplitState.SUCCEEDED,
        [(AGENT_MCHID, Money(2_500, "CNY"))],
    )
    assert adapter.split(request).provider_split_no == found.provider_split_no  # resent under the same number
    assert _executed(sim, request.split_no) == 1
    assert sim.split_ledger(trade[0])["received"] == {AGENT_MCHID: 2_500}


def test_a_5xx_is_unknown_and_a_split_without_a_transaction_id_is_refused_before_sending(adapter, sim, inbox):
    trade = _paid(adapter, sim, inbox, 10_000)
    sim.faults.fail_5xx = 1
    with pytest.raises(Unknown):
        adapter.split(_split(trade, _agent(100)))
    with pytest.raises(Terminal) as exc:
        adapter.split(_split((trade[0], ""), _agent(100)))
    assert exc.value.code == "no_trade_no"
    assert sim.split_ledger(trade[0])["split"] == 0


# ---- refusals ---------------------------------------------------------------------------------------------


def test_a_receiver_not_bound_fails_with_wechats_reason_and_nothing_moves(adapter, sim, inbox):
    trade = _paid(adapter, sim, inbox, 10_000)
    stranger = SplitReceiver("1900000999", "MERCHANT_ID", "未绑定公司", Money(1_000, "CNY"), "佣金")
    request = _split(trade, _agent(1_000), stranger)

    answer = adapter.split(request)

    assert (answer.status, answer.provider_status) == (SplitState.FAILED, "PARAM_ERROR")
    assert all(r.status == SplitState.FAILED for r in answer.receivers)
    assert "分账接收方关系不存在" in answer.receivers[0].failure_reason
    assert _executed(sim, request.split_no) == 0
    ledger = sim.split_ledger(trade[0])
    assert (ledger["split"], ledger["frozen"], ledger["received"]) == (0, 10_000, {})


def test_a_split_above_the_30_percent_ratio_fails_and_nothing_moves(adapter, sim, inbox):
    trade = _paid(adapter, sim, inbox, 10_000)
    at_most = adapter.split(_split(trade, _agent(2_000), finish=False))
    assert at_most.status == SplitState.PENDING  # 20 % so far
    over = _split(trade, _person(1_001))  # 30.01 % in all

    answer = adapter.split(over)

    assert (answer.status, answer.provider_status) == (SplitState.FAILED, "INVALID_REQUEST")
    assert "最大分账比例" in answer.receivers[0].failure_reason
    assert _executed(sim, over.split_no) == 0
    ledger = sim.split_ledger(trade[0])
    assert (ledger["split"], ledger["frozen"], ledger["received"]) == (2_000, 8_000, {AGENT_MCHID: 2_000})
    # Exactly 30 % is allowed.
    assert adapter.split(_split(trade, _person(1_000))).status == SplitState.PENDING
    assert sim.split_ledger(trade[0])["split"] == 3_000


def test_a_trade_not_created_splittable_cannot_be_split(adapter, sim, inbox):
    trade = _paid(adapter, sim, inbox, 10_000, split=False)
    assert sim.trade_for(trade[0])["profit_sharing"] is False
    request = _split(trade, _agent(1_000))

    answer = adapter.split(request)

    assert answer.status == SplitState.FAILED
    assert "profit_sharing" in answer.receivers[0].failure_reason
    assert _executed(sim, request.split_no) == 0
    assert sim.split_ledger(trade[0])["split"] == 0


# ---- refund, then the share comes back ----------------------------------------------------------------------


def _refund(trade: tuple[str, str], fen: int) -> RefundRequest:
    return RefundRequest(
        refund_no=f"RF20261203{next(_seq):08d}",
        out_trade_no=trade[0],
        provider_trade_no=trade[1],
        amount=Money(fen, "CNY"),
        total=Money(10_000, "CNY"),
        reason="买家退款",
        notify_url="",
    )


def _return(split: SplitRequest, receiver: SplitReceiver, no: str = "") -> SplitReturnRequest:
    return SplitReturnRequest(
        return_no=no or f"RT20261203{next(_seq):08d}",
        split_no=split.split_no,
        provider_split_no="",
        out_trade_no=split.out_trade_no,
        provider_trade_no=split.provider_trade_no,
        receiver=receiver,
    )


def test_refund_then_the_share_is_returned_once_per_return_no_and_not_above_it(adapter, sim, inbox):
    trade = _paid(adapter, sim, inbox, 10_000)
    split = _split(trade, _agent(3_000))
    assert adapter.split(split).status == SplitState.PENDING  # answered before WeChat settles it
    assert adapter.split_query(split).status == SplitState.SUCCEEDED
    assert adapter.refund(_refund(trade, 7_000)).status == RefundState.SUCCEEDED  # what the merchant kept
    with pytest.raises(Retryable):  # the agent's 3,000 is not the merchant's to refund until it comes back
        adapter.refund(_refund(trade, 3_000))

    back = _return(split, _agent(1_800, "退款回退"))
    first = adapter.split_return(back)
    again = adapter.split_return(back)

    assert (first.status, first.amount) == (SplitState.SUCCEEDED, Money(1_800, "CNY"))
    assert first.provider_return_no and again.provider_return_no == first.provider_return_no
    assert sum(1 for r in sim.split_return_log if r["out_return_no"] == back.return_no) == 1
    assert adapter.split_return_query(back).status == SplitState.SUCCEEDED

    over = _return(split, _agent(1_201))  # 1,200 left of the share
    refused = adapter.split_return(over)
    assert refused.status == SplitState.FAILED
    assert "回退金额超过" in refused.failure_reason
    assert adapter.split_return(_return(split, _agent(1_200))).status == SplitState.SUCCEEDED

    ledger = sim.split_ledger(trade[0])
    assert ledger["returned_by"] == {AGENT_MCHID: 3_000}
    assert ledger["returned"] == 3_000
    assert adapter.refund(_refund(trade, 3_000)).status == RefundState.SUCCEEDED
    assert sim.split_ledger(trade[0])["refunded"] == 10_000


def test_a_personal_receivers_share_cannot_be_returned(adapter, sim, inbox):
    trade = _paid(adapter, sim, inbox, 10_000)
    split = _split(trade, _person(1_000))
    adapter.split(split)
    with pytest.raises(Terminal) as exc:
        adapter.split_return(_return(split, _person(1_000)))
    assert exc.value.code == "not_returnable"
    assert sim.split_ledger(trade[0])["returned"] == 0


# ---- forged and tampered answers ---------------------------------------------------------------------------


class TamperingProxy:
    """Forwards to the simulator and rewrites PROCESSING/PENDING to FINISHED/SUCCESS, keeping WeChat's headers."""

    def __init__(self, upstream: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = requests.request(self.command, upstream + self.path, data=body, headers=headers, timeout=5)
                tampered = resp.content.replace(b'"PROCESSING"', b'"FINISHED"').replace(b'"PENDING"', b'"SUCCESS"')
                self.send_response(resp.status_code)
                for name, value in resp.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(tampered)))
                self.end_headers()
                self.wfile.write(tampered)

            do_GET = do_POST = _relay

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_tampered_answer_is_refused(config, adapter, sim, inbox):
    sim.split_auto_settle = False
    trade = _paid(adapter, sim, inbox, 10_000)
    request = _split(trade, _agent(1_000))
    proxy = TamperingProxy(sim.base_url)
    try:
        through = WechatPayAdapter(replace(config, base_url=proxy.url))
        with pytest.raises(Unknown) as exc:
            through.split(request)
        assert exc.value.code == "bad_signature"
        with pytest.raises(Unknown):
            through.split_query(request)
    finally:
        proxy.close()
    assert adapter.split_query(request).status == SplitState.PENDING  # WeChat's own word
    assert _executed(sim, request.split_no) == 1


def test_a_refusal_that_does_not_verify_is_not_believed(config, adapter, sim, inbox):
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = stranger_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    stranger = WechatPayAdapter(
        replace(config, credentials={**config.credentials, "platform_public_key": pem.decode()})
    )
    trade = _paid(adapter, sim, inbox, 10_000)
    over = _split(trade, _agent(3_001))  # WeChat refuses it (ratio), but that word cannot be checked here
    with pytest.raises(Unknown) as exc:
        stranger.split(over)
    assert exc.value.code == "bad_signature"
    assert _executed(sim, over.split_no) == 0


def test_more_receivers_than_wechat_takes_are_refused_before_sending(adapter, sim, inbox):
    trade = _paid(adapter, sim, inbox, 100_000)
    many = tuple(replace(_person(10), account=f"oPerson{i:04d}") for i in range(51))
    with pytest.raises(Terminal) as exc:
        adapter.split(_split(trade, *many))
    assert exc.value.code == "too_many"
    assert sim.split_ledger(trade[0])["split"] == 0


def test_the_adapter_offers_splitting():
    assert Capability.SPLIT in WechatPayAdapter.capabilities
