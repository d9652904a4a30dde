"""Requantization schemes: how an int32 accumulator becomes an 8-bit code.

Each scheme is one module here and one header in runtime_c/, written as twins: the reference
interpreter calls the Python side, the generated C calls the C side, and tests hold them equal.
"""
