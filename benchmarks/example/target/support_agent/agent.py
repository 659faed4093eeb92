"""A rule-based support agent for Kettle & Co., a small online tea shop.

It reads one customer message, decides what the customer wants (the intent), finds the order the
message is about, calls the order tools, and answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import policy
from .tools import Action, Tools

ORDER_ID = re.compile(r"\bA\d{4}\b")

# Checked in this order: the first intent with a keyword in the message wins.
INTENT_KEYWORDS = [
    ("track", ("where is", "track", "status")),
    ("cancel", ("cancel",)),
    ("refund", ("refund",)),
    ("address", ("address",)),
    ("returns_policy", ("return",)),
]

# Intents answered from the policy alone, without looking at an order.
POLICY_ANSWERS = {
    "returns_policy": (f"You can return unused items within {policy.RETURN_WINDOW_DAYS} days of delivery "
                       "for a full refund."),
}

FALLBACK = (f"Thanks for contacting {policy.SHOP_NAME}! A member of our team will get back to you "
            "within one business day.")


@dataclass
class Reply:
    text: str
    actions: list[Action] = field(default_factory=list)


def detect_intent(message: str) -> str | None:
    text = message.lower()
    for intent, keywords in INTENT_KEYWORDS:
        if any(keyword in text for keyword in keywords):
            return intent
    return None


def find_order_id(message: str) -> str | None:
    match = ORDER_ID.search(message)
    return match.group(0) if match else None


class SupportAgent:
    """One conversation turn: `handle(message)` returns the reply and the tool calls made."""

    def __init__(self, db: dict):
        self.tools = Tools(db)
        self.handlers = {
            "track": self.track,
            "cancel": self.cancel,
            "refund": self.refund,
            "address": self.change_address,
        }

    def handle(self, message: str) -> Reply:
        return Reply(self.respond(message), list(self.tools.calls))

    def respond(self, message: str) -> str:
        intent = detect_intent(message)
        if intent is None:
            return FALLBACK
        if intent in POLICY_ANSWERS:
            return POLICY_ANSWERS[intent]
        order_id = find_order_id(message)
        if order_id is None:
            return "Happy to help! Could you share your order number? It looks like A1234."
        order = self.tools.lookup_order(order_id)
        if order is None:
            return f"I couldn't find order {order_id}. Could you double-check the number?"
        return self.handlers[intent](order_id, order, message)

    def track(self, order_id: str, order: dict, message: str) -> str:
        return f"Your order {order_id} is currently {order['status']}."

    def cancel(self, order_id: str, order: dict, message: str) -> str:
        self.tools.cancel_order(order_id)
        return f"Done! Order {order_id} has been cancelled."

    def refund(self, order_id: str, order: dict, message: str) -> str:
        self.tools.issue_refund(order_id, order["total"])
        return (f"I've refunded ${order['total']:.2f} for order {order_id}. It should reach your original "
                "payment method within 5 business days.")

    def change_address(self, order_id: str, order: dict, message: str) -> str:
        return f"Sure! What's the new shipping address for order {order_id}?"
