"""Operators per step from a ``torch.profiler`` trace: the top-level aten calls, and which of
them do work (a kernel on a GPU) rather than only make a view or read metadata.

The top-level count is issue 37's measure (an op called inside another op is not counted
again; backward ops count). It includes ops that launch nothing on a GPU: ``detach`` when
autograd hands a parameter its first gradient, ``t`` in a linear layer's backward, views and
reshapes of contiguous tensors. ``working`` leaves those out, so it is the closer estimate
of a step's kernel launches; both are reported.
"""

# Ops that only make a view, an alias or an empty tensor, or read metadata: no kernel unless
# an op they call does (a reshape of a non-contiguous tensor calls clone, a cast _to_copy).
NO_KERNEL = frozenset(f"aten::{name}" for name in (
    "detach", "detach_", "alias", "t", "transpose", "permute", "view", "view_as",
    "_unsafe_view", "reshape", "_reshape_alias", "flatten", "unflatten", "squeeze",
    "unsqueeze", "expand", "expand_as", "select", "slice", "narrow", "as_strided", "unbind",
    "split", "chunk", "contiguous", "to", "type_as", "lift_fresh", "resolve_conj",
    "resolve_neg", "result_type", "promote_types", "empty", "empty_like", "empty_strided",
))


def _aten_parent(event):
    parent = event.cpu_parent
    while parent is not None and not parent.name.startswith("aten::"):
        parent = parent.cpu_parent
    return parent


def _works(event) -> bool:
    """Whether an op, or any op it calls, is not in NO_KERNEL."""
    if event.name.startswith("aten::") and event.name not in NO_KERNEL:
        return True
    return any(_works(child) for child in event.cpu_children)


def top_level_ops(prof) -> list[tuple[str, bool]]:
    """``(name, does work)`` of each aten op no other aten op encloses, in call order."""
    return [(event.name, _works(event)) for event in prof.events()
            if event.name.startswith("aten::") and _aten_parent(event) is None]
