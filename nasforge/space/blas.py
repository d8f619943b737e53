"""One BLAS thread for the small matrices of surrogates (a GP, an MLP ensemble): threaded BLAS
only adds overhead there (3x on 2 cores), and more beside a busy trainer."""
from __future__ import annotations

from typing import Any

from threadpoolctl import ThreadpoolController

_THREADPOOLS: list[ThreadpoolController] = []


def one_blas_thread() -> Any:
    """A context in which numpy's BLAS runs on one thread."""
    if not _THREADPOOLS:
        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1, user_api="blas")
