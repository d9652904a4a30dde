"""ONNX -> IR: load and validate the model (validate.py), fix input shapes and run shape inference
(onnx_loader.py), cut it at --inputs/--outputs (subgraph.py), fold constants, apply ORT's rewrites
before its QDQ fusion in ORT's order (node_elimination.py, matmul_add_fusion.py,
qdq_propagation.py, weight_bias_quantization.py), move Flatten-like byte movers to the quantized
side of the float boundary (boundary_movers.py), fuse QDQ groups (qdq.py), turn float islands into
tables (float_islands.py), split batched matrix products (batched_matmul.py), then import each node
through the op registered for it (onnx_loader.py)."""
