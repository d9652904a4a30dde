"""qcc: compile quantized ONNX and TFLite models to integer-only C99, bit-exact to their runtimes.

    import qcc
    manifest = qcc.compile("model.onnx", "out", name="kws", target="cortex-m4")
    report = qcc.verify("model.onnx", n=50)

The API (qcc/api.py): compile, verify, inspect, explain, bench; each raises QccError with the one
line the command line prints. It is imported on first use, so `import qcc` stays cheap."""

__version__ = "0.1.0"

_API = ("compile", "verify", "inspect", "explain", "bench", "render_explain", "render_bench", "QccError", "QccWarning")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from qcc import api

        return getattr(api, name)
    raise AttributeError(f"module 'qcc' has no attribute {name!r}")
