"""The shop's order tools. Every call is recorded as an Action, so a reply can say what was done."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Action:
    tool: str
    args: tuple

    def __str__(self) -> str:
        shown = (f"{a:.2f}" if isinstance(a, float) else str(a) for a in self.args)
        return f"{self.tool}({', '.join(shown)})"


class Tools:
    """The order system and the carriers' tracking, over one database.

    `db` is {"today": "YYYY-MM-DD", "orders": {order_id: order}, "shipments": {order_id: shipment}}.
    An order has customer, email, status (processing | shipped | delivered | cancelled), placed,
    items [{sku, name, qty, price}], total and address. A shipment has carrier, tracking, and either
    eta (on its way) or delivered (a date).
    """

    def __init__(self, db: dict):
        self._db = db
        self.calls: list[Action] = []

    def today(self) -> date:
        return date.fromisoformat(self._db["today"])

    def lookup_order(self, order_id: str) -> dict | None:
        self._record("lookup_order", order_id)
        order = self._db["orders"].get(order_id)
        return dict(order) if order else None

    def find_orders(self, email: str) -> list[str]:
        """Ids of the orders placed with this email address."""
        self._record("find_orders", email)
        return [oid for oid, o in self._db["orders"].items() if o["email"].lower() == email.strip().lower()]

    def track_shipment(self, order_id: str) -> dict | None:
        self._record("track_shipment", order_id)
        shipment = self._db["shipments"].get(order_id)
        return dict(shipment) if shipment else None

    def cancel_order(self, order_id: str) -> None:
        self._record("cancel_order", order_id)
        self._db["orders"][order_id]["status"] = "cancelled"

    def issue_refund(self, order_id: str, amount: float) -> None:
        amount = round(float(amount), 2)
        self._record("issue_refund", order_id, amount)
        self._db["orders"][order_id].setdefault("refunds", []).append(amount)

    def change_address(self, order_id: str, address: str) -> None:
        self._record("change_address", order_id, address)
        self._db["orders"][order_id]["address"] = address

    def _record(self, tool: str, *args) -> None:
        self.calls.append(Action(tool, args))
