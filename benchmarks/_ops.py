"""Operators per step from a ``torch.profiler`` trace: the top-level aten calls, and which of
them do work (a kernel on a GPU) rather than only make a view or read metadata.

The top-level count is issue 37's measure (an op called inside another op is not counted
again; backward ops count). It includes ops that launch nothing on a GPU: ``detach`` when
autograd hands a parameter its first gradient, ``t`` in a linear layer's backward, views and
reshapes of contiguous tensors. ``working`` leaves those out, so it is the closer estimate
of a step's kernel launches; both are reported.

A compiled network runs most of its work as kernels that Inductor generates, not as aten
ops. With ``profile_compiled_kernels()`` (core/private_api.py) set before compiling, each
fused CPU kernel is a traced event, counted here as one working op named
``inductor::cpp_fused``; without it a compiled step would look cheaper than it is.
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


FUSED_KERNEL = "cpp_fused_"  # in the name of every CPU kernel Inductor generates
FUSED_NAME = "inductor::cpp_fused"


def _is_op(event) -> bool:
    return event.name.startswith("aten::") or FUSED_KERNEL in event.name


def _op_parent(event):
    parent = event.cpu_parent
    while parent is not None and not _is_op(parent):
        parent = parent.cpu_parent
    return parent


def _works(event) -> bool:
    """Whether an op, or any op it calls, is not in NO_KERNEL (a fused kernel always is)."""
    if _is_op(event) and event.name not in NO_KERNEL:
        return True
    return any(_works(child) for child in event.cpu_children)


def top_level_ops(prof) -> list[tuple[str, bool]]:
    """``(name, does work)`` of each aten op or fused kernel that no other encloses, in call
    order; fused kernels all under one name."""
    return [(FUSED_NAME if FUSED_KERNEL in event.name else event.name, _works(event))
            for event in prof.events() if _is_op(event) and _op_parent(event) is None]
