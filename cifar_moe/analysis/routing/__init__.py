"""Routing analytics (the router itself and its penalties live in ``cifar_moe.models``).

* ``stats.py``: health metrics and the running ``RoutingStats`` accumulator;
* ``analytics.py``: ``RoutingAnalytics``, which logs ``route/block<i>/...``;
* ``plots.py``: the class x expert heat map and per-epoch routing-health curves.
"""
