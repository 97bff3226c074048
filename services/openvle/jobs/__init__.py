"""Job functions by area: each an operation's business logic. The catalogue in operations.py names
them by dotted path, so nothing imports this package to find them."""
