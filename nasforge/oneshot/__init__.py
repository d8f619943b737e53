"""One-shot (weight-sharing) search: one supernet holds every candidate, is trained once, and an
architecture is read from it.

    space (supernet mode) -> OneShotSearch (epochs of weight and architecture steps,
    checkpointed) -> the derived architecture -> an ordinary trial, retrained from scratch

A method (:class:`~nasforge.oneshot.base.OneShotMethod`: DARTS, ENAS) supplies the mixer of the
supernet and the steps; :class:`~nasforge.oneshot.loop.OneShotSearch` owns the loop, the data,
the checkpoints and the per-epoch record; :class:`~nasforge.oneshot.strategy.OneShotStrategy`
puts it behind the strategy protocol, so a one-shot search is chosen, stored, resumed, reported
and exported like any other.
"""
