"""cifar_moe: a Lightning research template for CIFAR-10 with per-sample routed expert convs."""

__version__ = "0.2.0"
