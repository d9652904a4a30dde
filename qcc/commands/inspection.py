"""`qcc inspect`: what qcc makes of each node (ONNX) or operator (TFLite) of a model, then the memory
report's table; for a .tflite, TFLM's own arena for the model beside qcc's."""

from __future__ import annotations

from qcc import ops
from qcc.backend.memory_report import memory_report, render_text
from qcc.backend.writer import emit_layers, io_entries
from qcc.errors import QccError
from qcc.frontend.onnx.onnx_loader import load_model
from qcc.onnx_graph import opset_of
from qcc.passes import range_analysis
from qcc.pipeline import Options, compile_model
from qcc.tflite_graph import is_tflite, read_tflite


def _quant_text(tensor) -> str:
    if tensor is None or tensor.quant is None:
        return "-"
    q = tensor.quant
    if q.per_channel:
        return f"s=[{q.scale.min():.3g}..{q.scale.max():.3g}] ({q.scale.size} ch) z=[{q.zero_point.min()}..{q.zero_point.max()}]"
    scale, zero = q.scalar()
    return f"s={scale:.6g} z={zero}"


def _u8s8_pair_notes(graph) -> list[str]:
    """Where ORT's uint8 x int8 kernels on x86 without VNNI would not give the exact sums."""
    notes = []
    for node in graph.nodes:
        pairs = node.params.get("u8s8_pairs")
        if pairs is None or not pairs.can_saturate:
            continue
        channels = pairs.saturating_channels()
        worst = pairs.worst_channel
        k = int(pairs.worst_k[worst])
        notes.append(f"int16 pairs: node '{node.name}' ({node.attrs.get('onnx_op', node.op)}): in {channels.size} of "
                     f"{pairs.low.size} output channels two adjacent uint8 x int8 products can sum outside int16 "
                     f"(worst: channel {worst}, K positions {k} and {k + 1} in ORT's order, sums in [{pairs.low[worst]}, "
                     f"{pairs.high[worst]}])")
    if notes:
        notes.append("int16 pairs: ONNX Runtime's uint8 x int8 kernels on x86 CPUs without VNNI saturate such pair sums: "
                     "without session.x64quantprecision=1 (or weights quantized with reduce_range) ORT on such a CPU can "
                     "differ from the exact arithmetic in these layers; qcc computes the exact sums")
    return notes


def _model_status(model: str, options: Options) -> tuple[str, list[tuple[str, str, str]]]:
    """The model's first line and (node, op, supported or not) for each node or operator, as the file has them."""
    if is_tflite(model):
        tflite = read_tflite(model)
        status = [((tflite.tensors[o.outputs[0]].name if o.outputs else "") or f"operator {o.index}",
                   f"{o.code} v{o.version}",
                   "supported" if ops.op_for_tflite(o.code, o.version) is not None else "UNSUPPORTED")
                  for o in tflite.operators]
        return f"{model}: {len(tflite.operators)} TFLite operators", status
    onnx_model = load_model(model, options.input_shapes)
    status = []
    for node in onnx_model.graph.node:
        opset = opset_of(onnx_model, node.domain)
        supported = (ops.op_for_onnx(node.domain, node.op_type, opset) is not None
                     or ops.qdq_op_for(node.domain, node.op_type, opset) is not None)
        status.append((node.name or node.output[0], node.op_type, "supported" if supported else "UNSUPPORTED"))
    return f"{model}: {len(onnx_model.graph.node)} ONNX nodes", status


def _tflm_arena_lines(compiled, tflm_arena) -> list[str]:
    """TFLM's arena for the model (its interpreter's own allocations) beside qcc's RAM, both with the model's
    inputs and outputs counted in (TFLM keeps them in its arena; qcc's C takes them as the caller's buffers,
    or in its arena with --io-in-arena)."""
    report = memory_report(compiled)
    ours = report.ram_bytes
    where = "inputs and outputs in it" if report.io_in_arena else f"+ inputs and outputs {report.io_bytes}"
    where += (f" + state {report.state_bytes}" if report.state_bytes else "") + f" = {ours} bytes"
    if tflm_arena is None:
        return [f"qcc: arena {report.arena_bytes} bytes ({where}); "
                "TFLM's arena: install the test extra (tflite-micro) to measure it beside"]
    arena = tflm_arena(open(compiled.graph.source, "rb").read())
    return [f"TFLM's arena (its interpreter's allocations, this 64-bit host): {arena.total} bytes = tensors "
            f"{arena.head} (inputs and outputs included) + persistent {arena.tail}",
            f"qcc: arena {report.arena_bytes} bytes ({where}), "
            f"{ours / arena.head:.2f} of TFLM's tensor bytes and {ours / arena.total:.2f} of its whole arena "
            "(qcc's constants, TFLM's persistent part among them, are in flash)"]


def inspect(model: str, options: Options, tflm_arena=None) -> dict:
    """What qcc makes of the model, as data, with "text", the table `qcc inspect` prints.
    `tflm_arena`: qcc.runtimes.tflm.arena where the test extra is installed (the API passes it)."""
    first_line, status = _model_status(model, options)
    facts = {"model": str(model), "nodes": [{"node": n, "op": t, "status": s} for n, t, s in status]}
    lines = [first_line]
    try:
        compiled = compile_model(model, options)
    except QccError as error:
        lines.append(f"{'node':<32} {'op':<26} status")
        lines += [f"{n:<32} {t:<26} {s}" for n, t, s in status]
        lines.append(f"cannot compile: {error}")
        return {**facts, "compiled": False, "error": str(error), "text": "\n".join(lines)}
    graph = compiled.graph
    _, _, layers = emit_layers(compiled, *io_entries(compiled))
    exactness = [ops.op_named(node.op).exactness for node in graph.nodes]  # each op's status against ORT
    width = max([10, *map(len, exactness)])
    lines.append(f"{'node':<28} {'op':<26} {'status':<{width}} {'input -> output shape':<30} {'MACs':>10} {'weight B':>9}  "
                 f"{'accumulator':<32} {'ORT int16 pairs':<18} quantization (x | w | y)")
    rows = []
    for node, layer, status in zip(graph.nodes, layers, exactness):
        data = [graph.tensor(t) for t in node.inputs if not graph.tensor(t).is_const]
        consts = [graph.tensor(t) for t in node.inputs if graph.tensor(t).is_const]
        out = graph.tensor(node.outputs[0])
        rows.append({"node": node.name, "op": layer["op"], "status": status,
                     "input_shapes": [list(t.shape) for t in data], "output_shape": list(out.shape),
                     "macs": layer["macs"], "weights_bytes": layer["weights_bytes"],
                     "accumulator": range_analysis.describe(node), "ort_int16_pairs": range_analysis.describe_u8s8_pairs(node),
                     "quantization": " | ".join(_quant_text(t) for t in (data[0] if data else None,
                                                                        consts[0] if consts else None, out))})
    for row in rows:
        shapes = ",".join("x".join(map(str, s)) for s in row["input_shapes"]) + " -> " + "x".join(map(str, row["output_shape"]))
        lines.append(f"{row['node'][:28]:<28} {row['op']:<26} {row['status']:<{width}} {shapes:<30} {row['macs']:>10} "
                     f"{row['weights_bytes']:>9}  {row['accumulator']:<32} {row['ort_int16_pairs']:<18} {row['quantization']}")
    plan = compiled.plan
    total_macs, total_weights = sum(r["macs"] for r in rows), sum(r["weights_bytes"] for r in rows)
    lines.append(f"total: {total_macs} MACs, {total_weights} weight bytes, arena {plan.arena_bytes} bytes "
                 f"(liveness bound {plan.liveness_bytes}: the most bytes of tensors alive at one step)")
    lines += [f"warning: {w}" for w in compiled.warnings]
    notes = _u8s8_pair_notes(graph)
    lines += notes
    boundary = []
    for name in graph.inputs + graph.outputs:
        t = graph.tensor(name)
        role = "input" if name in graph.inputs else "output"
        boundary.append({"role": role, "name": graph.public_name(name), "dtype": t.dtype, "shape": list(t.shape),
                         "quantization": _quant_text(t)})
        lines.append(f"{role:<6} '{graph.public_name(name)}': {t.dtype} {'x'.join(map(str, t.shape))} {_quant_text(t)}")
    tflm_lines = _tflm_arena_lines(compiled, tflm_arena) if graph.frontend == "tflite" else []
    lines += tflm_lines
    # the memory report's table (as `qcc compile --report` prints it): its lines start with the step number
    report = memory_report(compiled)
    lines += ["", render_text(report)]
    return {**facts, "compiled": True, "error": None, "layers": rows, "macs": total_macs, "weights_bytes": total_weights,
            "arena_bytes": plan.arena_bytes, "liveness_bytes": plan.liveness_bytes, "ram_bytes": report.ram_bytes,
            "warnings": list(compiled.warnings), "notes": notes, "io": boundary, "tflm_arena": tflm_lines,
            "text": "\n".join(lines)}
