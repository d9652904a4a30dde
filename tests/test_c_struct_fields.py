"""Every parameter struct in the generated C names its fields (C99 designated initializers), and the
names are the runtime headers' own: pycparser reads the typedefs of runtime_c/*.h and the
initializers of model.c, and each initializer must name every field of its struct, in the header's
order, with nothing positional, unknown or missing, and every array field filled to its length.
Nearly every field is an int32_t, so a positional list that drifts from its header still compiles:
this test is what catches a field renamed, added or reordered on one side only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from pycparser import c_ast, c_parser

from helpers import REPO
from models import quantize
from networks import NetBuilder
from qcc.commands.compile import compile_to_folder
from qcc.pipeline import Options
from test_generated_c import fake_libc, run, tool  # noqa: F401 (fake_libc is a fixture used here)
from tflite_builder import TfliteBuilder

SCHEMES = ("ort", "tflm")  # tflm gives the qcc_add_tflm / qcc_mul_tflm structs instead of qcc_qlinear_*


def every_struct_network(seed: int = 0):
    """A small float network with an op for every parameter struct the compiler emits."""
    net = NetBuilder("every_struct", [1, 4, 8, 8], seed)
    conv = net.conv("input", 8, 3)                                    # qcc_conv_params, qcc_requant_params
    pooled = net.maxpool(conv, k=2, stride=2)                         # qcc_maxpool_params
    averaged = net.avgpool(conv, (3, 3), (1, 1))                      # qcc_avgpool_params
    whole = net.avgpool(pooled, (4, 4))                               # the window is the map: the global path
    joined = net.concat([net.resize2x(pooled), conv])                 # qcc_gather_params, qcc_copy_params
    starts, ends, axes, steps = (net._const(net._name(k), np.array([v], np.int64))
                                 for k, v in (("starts", 1), ("ends", 7), ("axes", 3), ("steps", 2)))
    sliced = net._node("Slice", [joined, starts, ends, axes, steps], [1, 16, 8, 3])
    moved = net._node("Transpose", [averaged], [1, 6, 6, 8], perm=[0, 2, 3, 1])  # qcc_transpose_params
    # (of two tensors: a Mul or Add of one tensor with itself or a table of it becomes one table, fuse_tables.py)
    peaks = net.maxpool(conv, k=3, stride=1, ceil_mode=0)
    product = net._node("Mul", [averaged, peaks], net.shapes[averaged])          # qcc_qlinear_mul_params
    total = net.add(product, averaged)                                # qcc_qlinear_add_params, broadcast
    slope = net._const("slope", net.rng.uniform(-0.5, 0.5, (8, 1, 1)).astype(np.float32))
    # A per-channel PRelu on values of both signs: one table per channel (qcc_lookup_params)
    leaky = net._node("PRelu", [net.conv(total, 8, 1, act=None), slope], net.shapes[total])
    logits = net.dense(net.flatten(net.global_pool(leaky)), 5, act=None)  # qcc_global_avgpool_params, qcc_fc_params
    probabilities = net._node("Softmax", [logits], [1, 5], axis=1)    # qcc_softmax_params
    index = net._node("ArgMax", [joined], [1, 1, 8, 8], axis=1)       # qcc_arg_extreme_params
    model = net.build([sliced, moved, probabilities, net.flatten(whole)])
    model.graph.output.append(helper.make_tensor_value_info(index, TensorProto.INT64, net.shapes[index]))
    return model


# --- reading the C ----------------------------------------------------------------------------


def preprocess(source: Path, libc: Path, *include_dirs: Path) -> str:
    """gcc -E of `source` against the fake C library, for pycparser."""
    result = run([tool("gcc"), "-E", "-P", "-std=c99", "-nostdinc", "-U__SSE2__", f"-I{libc}",
                  *[f"-I{d}" for d in include_dirs], source])
    assert result.returncode == 0, result.stderr
    return result.stdout


@dataclass(frozen=True)
class Field:
    name: str
    struct: str | None = None  # the typedef name of a nested struct
    length: int | None = None  # the element count of an array


def struct_typedefs(ast: c_ast.FileAST) -> dict[str, list[Field]]:
    """typedef name -> its fields in declaration order, for every `typedef struct { ... } name;`."""
    structs: dict[str, list[Field]] = {}
    for node in ast.ext:
        if not (isinstance(node, c_ast.Typedef) and isinstance(node.type.type, c_ast.Struct)):
            continue
        fields = []
        for decl in node.type.type.decls:
            if isinstance(decl.type, c_ast.ArrayDecl):
                fields.append(Field(decl.name, length=int(decl.type.dim.value)))
            elif isinstance(decl.type.type, c_ast.IdentifierType) and decl.type.type.names[-1] in structs:
                fields.append(Field(decl.name, struct=decl.type.type.names[-1]))
            else:
                fields.append(Field(decl.name))
        structs[node.name] = fields
    return structs


def check_initializer(where: str, struct: str, init, structs: dict[str, list[Field]], seen: set[str]) -> list[str]:
    """What is wrong with `init` as a designated initializer of `struct` (and of the structs nested
    in it); adds every struct type it checks to `seen`."""
    seen.add(struct)
    if not isinstance(init, c_ast.InitList):
        return [f"{where}: a {struct} needs a {{ .field = ... }} initializer"]
    fields = {f.name: f for f in structs[struct]}
    errors, named = [], []
    for expr in init.exprs:
        if not isinstance(expr, c_ast.NamedInitializer):
            errors.append(f"{where}: positional initializer at {expr.coord} (every {struct} field must be named)")
            continue
        if len(expr.name) != 1 or not isinstance(expr.name[0], c_ast.ID):
            errors.append(f"{where}: designator at {expr.coord} is not a single .field")
            continue
        name = expr.name[0].name
        named.append(name)
        field = fields.get(name)
        if field is None:
            errors.append(f"{where}: {struct} has no field '{name}'")
        elif field.struct is not None:
            errors += check_initializer(f"{where}.{name}", field.struct, expr.expr, structs, seen)
        elif field.length is not None:
            # every element, positionally: a short list would silently zero the rest
            values = expr.expr.exprs if isinstance(expr.expr, c_ast.InitList) else None
            plain = values is not None and not any(isinstance(v, (c_ast.InitList, c_ast.NamedInitializer)) for v in values)
            if not plain or len(values) != field.length:
                count = f"{len(values)} values" if plain else "not a list of values"
                errors.append(f"{where}.{name}: {count} for an array of {field.length}")
        elif isinstance(expr.expr, c_ast.InitList):
            errors.append(f"{where}.{name}: a braced list for a scalar field")
    order = [f.name for f in structs[struct]]
    missing = [name for name in order if name not in named]
    if missing:
        errors.append(f"{where}: {struct} fields not initialised: {', '.join(missing)}")
    if len(set(named)) != len(named):
        errors.append(f"{where}: a field is named twice: {named}")
    known = [name for name in named if name in fields]
    if known != sorted(known, key=order.index):
        errors.append(f"{where}: fields not in the header's order: {named}")
    return errors


def check_model_c(text: str, structs: dict[str, list[Field]]) -> tuple[list[str], set[str]]:
    """The errors in every file-scope initialized variable of a runtime struct type in preprocessed
    C, and the struct types (nested ones included) it initializes."""
    errors, seen = [], set()
    for node in c_parser.CParser().parse(text, "model.c").ext:
        if (isinstance(node, c_ast.Decl) and node.init is not None and isinstance(node.type, c_ast.TypeDecl)
                and isinstance(node.type.type, c_ast.IdentifierType) and node.type.type.names[-1] in structs):
            errors += check_initializer(node.name, node.type.type.names[-1], node.init, structs, seen)
    return errors, seen


@pytest.fixture(scope="module")
def structs(fake_libc, tmp_path_factory) -> dict[str, list[Field]]:  # noqa: F811
    """The struct typedefs of every runtime header."""
    folder = tmp_path_factory.mktemp("headers")
    (folder / "all_headers.c").write_text("".join(f'#include "{h.name}"\n' for h in sorted((REPO / "runtime_c").glob("*.h"))))
    # qcc_requant.h includes the generated qcc_config.h; any scheme will do, no typedef depends on it
    (folder / "qcc_config.h").write_text("#define QCC_ROUNDING_ORT 1\n")
    text = preprocess(folder / "all_headers.c", fake_libc, REPO / "runtime_c", folder)
    return struct_typedefs(c_parser.CParser().parse(text, "all_headers.c"))


@pytest.fixture(scope="module")
def generated(fake_libc, tmp_path_factory) -> dict[str, str]:  # noqa: F811
    """Scheme -> the preprocessed model.c of every_struct_network compiled in that scheme."""
    folder = tmp_path_factory.mktemp("every_struct")
    path = quantize(every_struct_network(), folder / "every_struct.onnx", quant_format="QDQ")
    texts = {}
    for scheme in SCHEMES:
        compile_to_folder(path, folder / scheme, Options(rounding=scheme))
        texts[scheme] = preprocess(folder / scheme / "model.c", fake_libc, folder / scheme)
    # the TFLite-only kernels' structs: a model written by TensorFlow's converter (TFLM's average pool, softmax)
    compile_to_folder(REPO / "tests" / "data" / "tflite" / "kws_ref_model.tflite", folder / "tflite", Options())
    texts["tflite"] = preprocess(folder / "tflite" / "model.c", fake_libc, folder / "tflite")
    # 16x8 kernels: a converter-written model, and int8 -> int16 QUANTIZE (qcc_requantize_params) into TANH
    sixteen = TfliteBuilder()
    x = sixteen.input("x", (1, 4), "int8", scale=np.float32(0.05), zero_point=-7)
    h = sixteen.tensor("h", (1, 4), "int16", scale=np.float32(0.0004), zero_point=0)
    sixteen.op("QUANTIZE", [x], [h])
    t = sixteen.tensor("t", (1, 4), "int16", scale=np.float32(2**-15), zero_point=0)
    sixteen.op("TANH", [h], [t], version=3)
    image = sixteen.input("image", (1, 3, 2, 4), "int8", scale=np.float32(0.1), zero_point=3)
    wide = sixteen.tensor("wide", (1, 6, 4, 4), "int8", scale=np.float32(0.1), zero_point=3)
    sixteen.op("RESIZE_BILINEAR", [image, sixteen.const("size", np.array([6, 4], np.int32))], [wide], version=3,
               options=dict(half_pixel_centers=True))                 # qcc_resize_bilinear_params
    sixteen.output(t, wide)
    (folder / "mixed.tflite").write_bytes(sixteen.build())
    for name, path in (("16x8", REPO / "tests" / "data" / "tflite" / "net_16x8_int16_io.tflite"),
                       ("mixed", folder / "mixed.tflite"),
                       ("lstm", REPO / "tests" / "data" / "tflite" / "mnist_lstm_int8.tflite")):
        compile_to_folder(path, folder / name, Options())
        texts[name] = preprocess(folder / name / "model.c", fake_libc, folder / name)
    return texts


# --- the checks --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", [*SCHEMES, "tflite", "16x8", "mixed", "lstm"])
def test_every_parameter_struct_names_exactly_the_header_fields(generated, structs, scheme):
    errors, seen = check_model_c(generated[scheme], structs)
    assert errors == []
    assert seen  # the walk found the structs (the next test says which)


def test_the_models_initialize_every_parameter_struct_of_the_runtime(generated, structs):
    """The model covers every *_params typedef, so no struct escapes the check above."""
    seen = set().union(*(check_model_c(text, structs)[1] for text in generated.values()))
    assert seen == {name for name in structs if name.endswith("_params")}


MUTATIONS = {  # a change to the generated C -> what the check must report
    "renamed field": (lambda t: t.replace(".stride_h =", ".stride_hh =", 1),
                      ["qcc_conv_params has no field 'stride_hh'", "fields not initialised: stride_h"]),
    "dropped nested field": (lambda t: re.sub(r"\.acc_f32_exact = \d+,", "", t, count=1),
                             [".requant: qcc_requant_params fields not initialised: acc_f32_exact"]),
    "positional": (lambda t: re.sub(r"\.(outer|axis_len|inner|largest|last) = ", "", t),
                   ["positional initializer"]),
    "short array": (lambda t: t.replace(".out_dims = { 1,", ".out_dims = {", 1), ["out_dims: 5 values for an array of 6"]),
    "reordered": (lambda t: re.sub(r"(\.lo = \w+,)(\s*)(\.hi = \w+,)", r"\3\2\1", t, count=1),
                  ["fields not in the header's order"]),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_check_reports_a_wrong_initializer(generated, structs, mutation):
    """The check can fail: each mutation of correct C is reported, with the struct and field."""
    mutate, expected = MUTATIONS[mutation]
    text = mutate(generated["ort"])
    assert text != generated["ort"]
    errors, _ = check_model_c(text, structs)
    for message in expected:
        assert any(message in e for e in errors), (message, errors)
