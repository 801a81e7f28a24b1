"""Steps of the saga example (saga.yaml) and of its recovery workflow (restart_service.yaml).

The "services" are simulated in the Context, so the examples run anywhere:
stock reservations, a payment service that declines the card, a shipping
desk, and a payment service that can be diagnosed and restarted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# ------------------------------------------------------------------ saga.yaml


def reserve_stock(context: Any, args: Mapping[str, Any]) -> int:
    """Reserve ``quantity`` of ``sku``; the reservation must be released if the order fails."""
    context.set(
        "order.reservation",
        {"id": f"R-{args['sku']}-{args['quantity']}", "sku": args["sku"], "qty": args["quantity"]},
    )
    return 0


def release_stock(context: Any, args: Mapping[str, Any]) -> int:
    """Compensation of ``reserve_stock``: release the reservation (idempotent)."""
    reservation = context.get("order.reservation")
    if reservation is None:
        return 0  # nothing was reserved: nothing to release
    context.set("order.released", {"id": reservation["id"], "reason": args.get("reason")})
    return 0


def charge_card(context: Any, args: Mapping[str, Any]) -> int:
    """Charge the card; the simulated payment service declines ``tok_declined``."""
    if args["card"] == "tok_declined":
        raise ValueError(f"card declined for {args['amount']:.2f} EUR")
    context.set("order.payment", {"amount": args["amount"], "status": "captured"})
    return 0


def refund_card(context: Any, args: Mapping[str, Any]) -> int:
    """Compensation of ``charge_card``: refund what was captured."""
    payment = context.get("order.payment")
    if payment is not None:
        context.set("order.refunded", payment["amount"])
    return 0


def ship_order(context: Any, args: Mapping[str, Any]) -> int:
    """Hand the order to the shipping desk."""
    context.set("order.shipment", {"carrier": args.get("carrier", "post"), "status": "booked"})
    return 0


def cancel_shipment(context: Any, args: Mapping[str, Any]) -> int:
    """Compensation of ``ship_order``: cancel the booking."""
    context.set("order.shipment_cancelled", True)
    return 0


# ------------------------------------------------------------------ restart_service.yaml


def diagnose(context: Any, args: Mapping[str, Any]) -> int:
    """Note which step failed and why (``failure.*``, set by the recipe that recovers)."""
    error = context.get("failure.error") or {}
    context.set(
        f"service.{args['service']}.diagnosis",
        {
            "failed_step": context.get("failure.step"),
            "error_type": error.get("exception_type"),
            "message": error.get("message"),
            "run_id": context.get("failure.run_id"),
        },
    )
    return 0


def restart_service(context: Any, args: Mapping[str, Any]) -> int:
    """Restart the (simulated) service."""
    key = f"service.{args['service']}.restarts"
    context.set(key, int(context.get(key, 0)) + 1)
    return 0


def health_check(context: Any, args: Mapping[str, Any]) -> int:
    """Report the service healthy once it was restarted."""
    restarted = bool(context.get(f"service.{args['service']}.restarts"))
    context.set(f"service.{args['service']}.healthy", restarted)
    return 0 if restarted else 1
