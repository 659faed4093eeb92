"""Kettle & Co.'s customer policy: the rules and numbers the agent may promise."""

SHOP_NAME = "Kettle & Co."

# Unused items can be returned for a refund this many days after delivery.
RETURN_WINDOW_DAYS = 30

FREE_SHIPPING_OVER_USD = 40.00
FLAT_SHIPPING_USD = 4.95
DELIVERY_TIME = "3 to 5 business days"

# The warehouse picks orders within a day; after that an order can no longer be changed.
CHANGEABLE_STATUSES = ("processing",)
