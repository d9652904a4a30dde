"""TFLite -> IR: read and check the flatbuffer (qcc/tflite_graph.py), then import each operator of
subgraph 0 through the op registered for its builtin code and version (importer.py)."""
