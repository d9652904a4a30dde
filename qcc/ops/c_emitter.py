"""What op modules use to write C: constant arrays and parameter structs in flash, and the
C expression for any tensor's storage (arena slice, caller argument)."""

from __future__ import annotations

import hashlib
import keyword
import re

import numpy as np

from qcc.errors import QccError
from qcc.ir import C_TYPES, Graph, MemoryPlan

_C_KEYWORDS = set("""auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while _Bool _Complex _Imaginary main""".split())
# What the generated files include (stdint.h, stddef.h, string.h, stdio.h, stdlib.h) declares or
# defines as a macro: a model's name must never become one of these.
_C_LIBRARY = set("""int8_t uint8_t int16_t uint16_t int32_t uint32_t int64_t uint64_t intptr_t uintptr_t intmax_t
uintmax_t size_t ptrdiff_t wchar_t NULL offsetof memcpy memmove memset memcmp memchr strlen strcpy strncpy strcat
strcmp strncmp strchr strrchr strstr strtok strerror FILE EOF BUFSIZ FILENAME_MAX FOPEN_MAX SEEK_SET SEEK_CUR
SEEK_END TMP_MAX L_tmpnam stdin stdout stderr printf fprintf sprintf snprintf vprintf vfprintf scanf fscanf sscanf
fopen fclose fflush fread fwrite fgetc fgets fputc fputs getc getchar putc putchar puts remove rename tmpfile
fseek ftell rewind feof ferror clearerr perror setbuf setvbuf exit abort atexit getenv system malloc calloc
realloc free abs labs div ldiv atoi atol atof strtol strtoul strtod rand srand qsort bsearch EXIT_SUCCESS
EXIT_FAILURE RAND_MAX MB_CUR_MAX errno assert bool true false""".split())
_C_LIMIT_MACRO = re.compile(r"U?INT(8|16|32|64|PTR|MAX)_(MIN|MAX|C)|U?INT(8|16|32|64|MAX)_C|SIZE_MAX|PTRDIFF_(MIN|MAX)")
_MAX_IDENTIFIER = 48  # longer names are cut and given a hash, so that they stay unique and readable
_MAX_TEXT = 120  # names shown in comments and strings are cut to this many characters
_VALUES_PER_LINE = 16
# --weights-section / --arena-section: what GNU as and ld take as a plain section name
_SECTION_NAME = re.compile(r"[.A-Za-z_][.A-Za-z0-9_]*")
_MAX_SECTION = 64


def c_identifier(text: str) -> str:
    """A C identifier made from a model's name: other characters become '_'; never a keyword,
    a name the standard headers declare, or a reserved form (leading '_' or digit); at most
    _MAX_IDENTIFIER characters (a hash of the whole name keeps long ones apart)."""
    ident = re.sub(r"[^0-9A-Za-z_]", "_", text) or "t"
    if ident[0].isdigit() or ident[0] == "_":
        ident = "t" + ("" if ident[0] == "_" else "_") + ident
    if len(ident) > _MAX_IDENTIFIER:
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        ident = f"{ident[:_MAX_IDENTIFIER - 9]}_{digest}"
    if ident in _C_KEYWORDS or ident in _C_LIBRARY or keyword.iskeyword(ident) or _C_LIMIT_MACRO.fullmatch(ident):
        ident += "_"
    return ident


def c_comment_text(text: str, limit: int | None = None) -> str:
    """A model's text made safe inside a /* */ comment: printable ASCII only, no comment
    delimiters or trigraph starts, at most `limit` characters (default _MAX_TEXT)."""
    limit = limit or _MAX_TEXT
    safe = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    safe = safe.replace("*/", "*_/").replace("/*", "/_*").replace("??", "?_?").replace("\\", "/")
    return safe if len(safe) <= limit else safe[:limit - 3] + "..."


def c_string_literal(text: str) -> str:
    """A model's text as a C string literal: quotes, backslashes, '?' (trigraphs) and every byte
    outside printable ASCII escaped; at most _MAX_TEXT characters of the text."""
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT - 3] + "..."
    out = []
    for byte in text.encode("utf-8", "replace"):
        ch = chr(byte)
        if ch in "\\\"?":
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_float_literal(value) -> str:
    """A C99 hexadecimal float literal that denotes exactly this float32 value."""
    mantissa, _, exponent = float(np.float32(value)).hex().partition("p")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa}p{exponent}f"


def format_values(values: np.ndarray) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i:i + _VALUES_PER_LINE]) for i in range(0, len(flat), _VALUES_PER_LINE)]
    return ",\n    ".join(lines)


def designated_initializer(fields: dict, depth: int = 0) -> str:
    """`{ .field = value, ... }`, one field a line: a dict value is a nested struct (indented one
    level deeper), a list or tuple an array field, anything else a C expression."""
    indent = "    " * (depth + 1)
    lines = []
    for field, value in fields.items():
        if isinstance(value, dict):
            value = designated_initializer(value, depth + 1)
        elif isinstance(value, (list, tuple)):
            value = "{ " + ", ".join(str(v) for v in value) + " }"
        lines.append(f"{indent}.{field} = {value},")
    return "{\n" + "\n".join(lines) + "\n" + "    " * depth + "}"


# Section names the toolchains give a meaning of their own (the ELF gABI's special sections, GNU ld's and
# the Arm toolchain's standard output sections, qcc's own linker script): constants or an arena placed
# there become constructors run at start-up or exit, code, thread-local data, unwinding tables, or
# nothing at all. Exact names, then prefixes (a prefix covers its numbered or suffixed forms).
RESERVED_SECTIONS = frozenset((
    ".bss", ".comment", ".data", ".data1", ".debug", ".dynamic", ".dynstr", ".dynsym", ".fini", ".fini_array",
    ".got", ".hash", ".init", ".init_array", ".interp", ".line", ".note", ".plt", ".preinit_array", ".rodata",
    ".rodata1", ".shstrtab", ".strtab", ".symtab", ".symtab_shndx", ".tbss", ".tdata", ".tdata1", ".text",
    ".ctors", ".dtors", ".jcr", ".eh_frame", ".eh_frame_hdr", ".gcc_except_table", ".stack", ".heap", ".vectors",
    ".isr_vector", ".stab", ".stabstr"))
RESERVED_SECTION_PREFIXES = (".debug", ".zdebug", ".note.", ".rel.", ".rela.", ".gnu.", ".ARM.", ".init_array.",
                             ".fini_array.", ".preinit_array.", ".ctors.", ".dtors.", ".tdata.", ".tbss.", ".got.",
                             ".plt.", ".eh_frame", ".stab.", ".qcc_")
# Input sections GNU ld's scripts (and qcc's) gather into an output section that cannot hold the role:
# the constants need their initial values (not in a section that is never loaded), the arena is written
# (not in a read-only or executable one).
NOT_LOADED_PREFIXES = (".bss.", ".sbss", ".noinit", ".tbss")
READ_ONLY_PREFIXES = (".text.", ".rodata.", ".srodata", ".init.", ".fini.")


def section_attribute(option: str, section: str | None, writable: bool) -> str:
    """` __attribute__((section("NAME")))` for --weights-section / --arena-section NAME (`writable`: the
    arena's), or "" when the option is not given. The name goes into a C string and a linker script:
    only a plain section name is accepted, so nothing reaches the C unescaped, and none the toolchain
    reserves or that cannot hold constants (or the writable arena)."""
    if section is None:
        return ""
    if len(section) > _MAX_SECTION or not _SECTION_NAME.fullmatch(section):
        raise QccError(f"{option} {section[:_MAX_SECTION]!r}: not a section name (letters, digits, '_' and '.', "
                       f"not starting with a digit, at most {_MAX_SECTION} characters)")
    own = ".model_arena" if writable else ".model_weights"
    if section in RESERVED_SECTIONS or section.startswith(RESERVED_SECTION_PREFIXES):
        raise QccError(f"{option} {section!r}: the toolchain reserves this section (an ELF special section or a "
                       f"linker script's standard one); leave the option out for the compiler's default, or give "
                       f"a name of your own, such as {own}")
    if not writable and section.startswith(NOT_LOADED_PREFIXES):
        raise QccError(f"{option} {section!r}: the linker gathers this section into one that is never loaded: the "
                       f"constants would lose their values; give a name of your own, such as {own}")
    if writable and section.startswith(READ_ONLY_PREFIXES):
        raise QccError(f"{option} {section!r}: the linker gathers this section into read-only code or constants: "
                       f"the arena could not be written; give a name of your own, such as {own}")
    return f' __attribute__((section("{section}")))'


class CEmitter:
    def __init__(self, graph: Graph, plan: MemoryPlan, prefix: str, argument_names: dict[str, str],
                 weights_section: str | None = None):
        self.graph = graph
        self.plan = plan
        self.prefix = prefix  # --name: every symbol of model.c starts with it, so two models link into one image
        self.arena_symbol = f"{prefix}_arena"
        # the state that persists between inferences (graph.states): its buffer, the values the first inference
        # starts with (CALL_ONCE's), and whether that has run
        self.state_symbol = f"{prefix}_state"
        self.first_call_symbol = f"{prefix}_state_first_call"
        self.started_symbol = f"{prefix}_started"
        self.argument_names = argument_names  # tensor -> C parameter name
        self.declarations: list[str] = []
        self._symbols: dict[str, str] = {}
        self._taken: set[str] = set(argument_names.values()) | {self.arena_symbol, self.state_symbol,
                                                                 self.first_call_symbol, self.started_symbol}
        self._section = section_attribute("--weights-section", weights_section, writable=False)
        self.weights_bytes = 0
        self.array_bytes: dict[str, int] = {}  # each const array's bytes, by its C name (where a board places it)
        self._arrays: dict[tuple, str] = {}  # (C type, size, bytes) -> the array's name
        self._definitions: dict[tuple, str] = {}  # (macro, what, arguments) -> the function's name

    def symbol(self, node_name: str) -> str:
        """A C identifier for a node, stable for the model and unique in model.c. It starts with
        the model's prefix: the constants are static, but their names show in the image's symbol
        table, where two models' 'conv1_weights' would be told apart only by address. Ops append
        suffixes to it (_params, _weights, ...), so no argument name may start with it, and it
        never starts with the runtime's qcc_ prefix."""
        if node_name not in self._symbols:
            base = f"{self.prefix}_{c_identifier(node_name)}"
            if base.lower().startswith("qcc_"):
                base = "n_" + base
            ident, k = base, 2
            while ident in self._taken or any(arg.startswith(ident + "_") for arg in self.argument_names.values()):
                ident, k = f"{base}_{k}", k + 1
            self._taken.add(ident)
            self._symbols[node_name] = ident
        return self._symbols[node_name]

    def const_array(self, name: str, ctype: str, values: np.ndarray) -> str:
        """Declares a const array and returns its name; an array with the same type and values as one
        declared before is that one (the views of a streamed layer share its weights)."""
        values = np.asarray(values)
        key = (ctype, values.size, values.tobytes())
        if key in self._arrays:
            return self._arrays[key]
        self._arrays[key] = name
        self.array_bytes[name] = values.size * np.dtype(ctype.replace("_t", "")).itemsize
        self.weights_bytes += self.array_bytes[name]
        self.declarations.append(
            f"static const {ctype} {name}[{values.size}]{self._section} = {{\n    {format_values(values)}\n}};")
        return name

    def definition(self, macro: str, what: str, *arguments) -> str:
        """A function that a runtime macro defines for the model (`macro(NAME, arguments...)`, for layers of one
        shape, `what` naming it): written once, before the parameter structs that name it; returns its name, the
        model's prefix and `what`, unique in model.c."""
        key = (macro, what, *arguments)
        if key not in self._definitions:
            ident, k = f"{self.prefix}_{what}", 2
            while ident in self._taken:
                ident, k = f"{self.prefix}_{what}_{k}", k + 1
            self._taken.add(ident)
            self._definitions[key] = ident
            self.declarations.append(f"{macro}({', '.join([ident, *map(str, arguments)])})")
        return self._definitions[key]

    def const_float_array(self, name: str, values: np.ndarray) -> str:
        """A static const float array of float32 values, each written as the hexadecimal literal that
        denotes it exactly."""
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        self.array_bytes[name] = values.size * 4
        self.weights_bytes += values.size * 4
        literals = [c_float_literal(v) for v in values]
        lines = [", ".join(literals[i:i + _VALUES_PER_LINE // 2]) for i in range(0, len(literals), _VALUES_PER_LINE // 2)]
        self.declarations.append(f"static const float {name}[{values.size}]{self._section} = {{\n    "
                                 + ",\n    ".join(lines) + "\n};")
        return name

    def struct(self, ctype: str, name: str, fields: dict) -> str:
        """Declares a const parameter struct and returns a pointer to it. `fields` maps the field
        names of the runtime header, in the header's order, to their values (see
        designated_initializer): the C names every field, so a reader sees which number is which,
        and a misspelt field fails to compile instead of shifting every value after it."""
        self.declarations.append(f"static const {ctype} {name}{self._section} = {designated_initializer(fields)};")
        return f"&{name}"

    def scratch(self, node) -> str:
        """A pointer to the node's scratch buffer (word-aligned) in the arena."""
        step = self.graph.nodes.index(node)
        return f"(int32_t *)(void *)&{self.arena_symbol}.bytes[{self.plan.scratch[step]}]"

    def scratch_size(self, node) -> int:
        """The bytes of the node's scratch buffer: the one of its scratch_choices the plan gave it."""
        return self.plan.scratch_bytes.get(self.graph.nodes.index(node), 0)

    def same_storage(self, a: str, b: str) -> bool:
        return self.plan.same_storage(a, b)

    def tensor(self, name: str, as_dtype: str | None = None) -> str:
        """A C pointer expression to the tensor's first element, typed as its dtype (or as_dtype)."""
        tensor = self.graph.tensor(name)
        ctype = C_TYPES[as_dtype or tensor.dtype]
        storage = self.plan.storage[name]
        if storage.kind == "arena":
            return f"({ctype} *)&{self.arena_symbol}.bytes[{storage.offset}]"
        if storage.kind == "state":
            return f"({ctype} *)&{self.state_symbol}.bytes[{storage.offset}]"
        if storage.kind in ("input", "output"):
            # The caller's argument this tensor lives in (itself, or what a Reshape-like op aliases).
            owner = (self.graph.inputs if storage.kind == "input" else self.graph.outputs)[storage.index]
            expr = self.argument_names[owner]
            # (an alias may read the bytes as another type: a uint8 image as int8 codes through a table)
            if (as_dtype or tensor.dtype) != self.graph.tensor(owner).dtype:
                qualifier = "const " if storage.kind == "input" else ""
                expr = f"({qualifier}{ctype} *){expr}"
            return expr
        raise NotImplementedError(f"tensor '{name}' has no runtime storage ({storage.kind})")
