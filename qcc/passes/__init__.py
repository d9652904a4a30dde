"""Graph passes, run in this order by qcc.pipeline: io_boundary, fold_activations, prepare, execution_order, memory_plan."""
