"""Everything about routing except the router module itself (``cifar_moe.models.router``).

* ``stats.py``: health metrics, the running ``RoutingStats`` accumulator and the balance /
  mutual-information regulariser (pure torch, used by the network, callbacks and notebooks);
* ``callbacks.py``: ``RoutingAnalytics`` (logs ``route/block<i>/...``) and
  ``TemperatureSchedule`` (anneals the routers' softmax temperature);
* ``plots.py``: the class x expert heat map and per-epoch routing-health curves.

Nothing is imported here, so ``cifar_moe.models`` can use ``stats`` without a cycle.
"""
