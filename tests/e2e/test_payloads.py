"""Payloads are msgspec JSON: Structs and dataclasses round-trip where the code is annotated."""

from __future__ import annotations

import dataclasses
import datetime
import uuid

import msgspec
import pytest

import duro
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, failed, runtime

pytestmark = pytest.mark.anyio


class Item(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class Order(msgspec.Struct):
    order_id: str
    items: list[Item]
    placed_at: datetime.datetime


class Receipt(msgspec.Struct):
    order_id: str
    total_qty: int
    checked: bool


@dataclasses.dataclass
class Address:
    street: str
    zip_code: str


@dataclasses.dataclass
class Label:
    address: Address
    tracking: uuid.UUID


async def test_struct_inputs_and_outputs_round_trip_through_orchestrations_and_activities(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def check(ctx: duro.ActivityContext, order: Order) -> Receipt:
        assert isinstance(order, Order) and all(isinstance(i, Item) for i in order.items)
        assert isinstance(order.placed_at, datetime.datetime)
        return Receipt(order.order_id, sum(i.qty for i in order.items), True)

    @registry.orchestration
    async def process(ctx: duro.OrchestrationContext, order: Order) -> Receipt:
        assert isinstance(order, Order)
        receipt = await ctx.schedule_activity(check, order)
        assert isinstance(receipt, Receipt)
        return receipt

    placed = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    order = Order("o-1", [Item("a", 2), Item("b", 3)], placed)
    async with runtime(store, registry, clock):
        await client.start_orchestration("pl-1", process, order)
        status = await client.wait_for_orchestration("pl-1", timeout=5)
    assert status.state is duro.State.COMPLETED, status.error
    assert status.output == {"order_id": "o-1", "total_qty": 5, "checked": True}
    assert status.output_as(Receipt) == Receipt("o-1", 5, True)


async def test_dataclass_inputs_and_outputs_round_trip(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    tracking = uuid.UUID("12345678-1234-5678-1234-567812345678")

    @registry.activity
    def make_label(ctx: duro.ActivityContext, address: Address) -> Label:
        assert isinstance(address, Address)
        return Label(address, tracking)

    @registry.orchestration
    async def labels(ctx: duro.OrchestrationContext, address: Address) -> Label:
        label = await ctx.schedule_activity(make_label, address)
        assert isinstance(label, Label) and isinstance(label.tracking, uuid.UUID)
        return label

    async with runtime(store, registry, clock):
        await client.start_orchestration("pl-2", labels, Address("Main St 1", "12345"))
        await completed(client, "pl-2")
        status = await client.get_status("pl-2")
    assert status.output_as(Label) == Label(Address("Main St 1", "12345"), tracking)


async def test_structs_round_trip_through_sub_orchestrations_events_and_kv(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def child(ctx: duro.OrchestrationContext, item: Item) -> Item:
        assert isinstance(item, Item)
        return Item(item.sku.upper(), item.qty * 10)

    @registry.orchestration
    async def parent(ctx: duro.OrchestrationContext, _: None) -> list[object]:
        doubled = await ctx.schedule_sub_orchestration(child, Item("x", 1))
        event = await ctx.wait_for_event("item", type=Item)
        queued = await ctx.dequeue_event("items", type=Item)
        ctx.kv.set("last", event)
        stored = ctx.kv.get("last", type=Item)
        return [
            isinstance(doubled, Item),
            isinstance(event, Item),
            isinstance(queued, Item),
            stored == event,
            doubled,
        ]

    async with runtime(store, registry, clock):
        await client.start_orchestration("pl-3", parent)
        await client.raise_event("pl-3", "item", Item("e", 2))
        await client.enqueue_event("pl-3", "items", Item("q", 3))
        assert await completed(client, "pl-3") == [
            True,
            True,
            True,
            True,
            {"sku": "X", "qty": 10},
        ]
    assert await client.get_value("pl-3", "last", type=Item) == Item("e", 2)


async def test_unannotated_payloads_decode_to_builtins(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.orchestration
    async def loose(ctx, value):  # type: ignore[no-untyped-def]
        return [type(value).__name__, value]

    async with runtime(store, registry, clock):
        await client.start_orchestration("pl-4", "loose", Item("a", 1))
        assert await completed(client, "pl-4") == ["dict", {"sku": "a", "qty": 1}]


async def test_struct_that_does_not_validate_fails_with_payload_error(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def wants_item(ctx: duro.ActivityContext, item: Item) -> int:
        return item.qty

    @registry.orchestration
    async def sends_bad(ctx: duro.OrchestrationContext, _: None) -> list[str]:
        try:
            await ctx.schedule_activity(wants_item, {"sku": "a", "qty": "many"})
        except duro.ActivityFailedError as exc:
            return [exc.error_type]
        return []

    @registry.orchestration
    async def typed(ctx: duro.OrchestrationContext, item: Item) -> int:
        return item.qty

    async with runtime(store, registry, clock):
        await client.start_orchestration("pl-5", sends_bad)
        await client.start_orchestration("pl-6", typed, {"sku": 1})
        assert await completed(client, "pl-5") == ["PayloadError"]
        assert (await failed(client, "pl-6")).error_type == "PayloadError"


async def test_json_builtin_values_round_trip(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    @registry.activity
    async def echo(ctx: duro.ActivityContext, value: object) -> object:
        return value

    @registry.orchestration
    async def many(ctx: duro.OrchestrationContext, values: list[object]) -> list[object]:
        return await ctx.join([ctx.schedule_activity(echo, v) for v in values])

    values: list[object] = [None, True, 0, -1.5, "ünïcødé", [1, [2]], {"k": {"n": None}}]
    async with runtime(store, registry, clock):
        await client.start_orchestration("pl-7", many, values)
        assert await completed(client, "pl-7") == values
