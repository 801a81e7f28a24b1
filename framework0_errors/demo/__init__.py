"""Scriptlets used by the example recipes in ``recipes/``.

They simulate the services recipes talk to: one that answers, one that is
flaky, one that is dead and one that is slow. Each counts the calls it
receives in the Context (``demo.calls.<step>``) so a run shows what
resilience cost the service.
"""
