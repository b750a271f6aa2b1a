"""Helpers for the numba-compiled kernels. Its modules import numba at import time, so the
backend registry (which imports only this package's `__init__`) never loads them."""
