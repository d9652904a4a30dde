"""Every output folder's CMakeLists.txt (templates/CMakeLists.txt.j2): built alone on the host with strict
flags and its golden test run by CTest; two models of one rounding scheme added to one project share one
runtime compiled once; folders of two rounding schemes or of two qcc versions are refused at configure time;
cross-compiled for the Cortex-M4 with the folder's toolchain file, its golden test runs on QEMU; as an
ESP-IDF component and as a Zephyr module (both faked: neither is installed) it registers itself; and
examples/firmware_cmake builds the two-model firmware of examples/firmware and runs it on QEMU."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import REPO
from models import quantize
from qcc import reference
from qcc.commands.compile import compile_to_folder
from qcc.pipeline import Options
from qcc.sample_inputs import random_inputs
from qcc.toolchain.targets import CORTEX_M, TARGETS
from test_firmware import MODELS, SECTIONS

STRICT = "-Wall -Wextra -Wpedantic -Werror"
FIRMWARE_CMAKE = REPO / "examples" / "firmware_cmake"
BAREMETAL_SOURCES = {"qcc_startup.c", "qcc_syscalls.c"}


def tool(name: str) -> str:
    """A required tool: a missing one fails the test (never skips it); .ci/run installs them."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install cmake gcc-arm-none-eabi qemu-system-arm)")
    return path


def run(*cmd, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600,
                          env=None if env is None else {**os.environ, **env})


def configure(source: Path, build: Path, *options: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run(tool("cmake"), "-S", source, "-B", build, "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", *options, env=env)


def build_and_test(build: Path, *target: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    built = run(tool("cmake"), "--build", build, "-j4", *(("--target", *target) if target else ()))
    tested = run(tool("ctest"), "--test-dir", build, "-V") if built.returncode == 0 and not target else None
    return built, tested


def configured_built_tested(source: Path, build: Path, *options: str, env: dict | None = None) -> str:
    """Configure, build and run CTest, each step passing; CTest's output."""
    configured = configure(source, build, *options, env=env)
    assert configured.returncode == 0, configured.stdout + configured.stderr
    built, tested = build_and_test(build)
    assert built.returncode == 0, built.stdout + built.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr
    return tested.stdout


def compile_commands(build: Path) -> list[dict]:
    return json.loads((build / "compile_commands.json").read_text())


def runtime_sources(folder: Path) -> set[str]:
    """The runtime .c files qcc copied into a folder (the ones its model's ops call)."""
    return {p.name for p in folder.glob("qcc_*.c")} - BAREMETAL_SOURCES - {"qcc_runner.c"}


class Folders:
    """kws (uint8) and vww (int8) for the Cortex-M4 with sections, as examples/firmware takes them, each with
    two golden cases, an input file and the reference's output on it; vww also in the tflm scheme."""

    def __init__(self, root: Path):
        self.root = root
        self.folder, self.manifest, self.input, self.expected = {}, {}, {}, {}
        lines = []
        for name, (network, activation, out_ctype) in MODELS.items():
            model = quantize(network(), root / f"{name}.onnx", quant_format="QDQ", activation=activation)
            options = Options(name=name, target="cortex-m4", **SECTIONS)
            compiled, manifest = compile_to_folder(model, root / name, options, golden="2")
            (x,) = random_inputs(compiled.graph, 1, seed=3)[0]
            (self.expected[name],) = reference.run(compiled.graph, [x])
            self.input[name] = root / f"{name}.bin"
            self.input[name].write_bytes(x.tobytes())
            self.folder[name], self.manifest[name] = root / name, manifest
            (inp,), (out,) = manifest["inputs"], manifest["outputs"]
            lines.append(f"MODEL({name}, {name.upper()}_INPUT_{inp['c_name'].upper()}_COUNT, {out_ctype}, "
                         f"{name.upper()}_OUTPUT_{out['c_name'].upper()}_COUNT)")
            if name == "vww":
                compile_to_folder(model, root / "vww_tflm", Options(name="vww_tflm", target="cortex-m4", rounding="tflm"),
                                  golden="1")
                # the same compile into another folder: nothing in the CMake files may depend on the path
                compile_to_folder(model, root / "again" / "vww", options, golden="2")
        self.models_def = root / "models.def"
        self.models_def.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Folders:
    return Folders(tmp_path_factory.mktemp("cmake_models"))


# --- the files ---------------------------------------------------------------------------------


def test_the_cmake_files_are_byte_identical_between_compiles(folders):
    first, again = folders.folder["vww"], folders.root / "again" / "vww"
    names = ["CMakeLists.txt", "zephyr/module.yml"] + [f"qcc_{board}.cmake" for board in CORTEX_M
                                                       if (first / f"qcc_{board}.ld").exists()]
    assert "qcc_cortex-m4.cmake" in names
    for name in names:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
        assert str(folders.root) not in (first / name).read_text()
    text = (first / "CMakeLists.txt").read_text()
    assert text.startswith("# Generated by qcc ")
    assert "add_library(vww STATIC" in text and "add_test(NAME vww_golden" in text
    assert (first / "zephyr" / "module.yml").read_text().endswith("name: vww\nbuild:\n  cmake: .\n")


def test_each_board_toolchain_file_has_the_board_flags(folders):
    for board in CORTEX_M:
        path = folders.folder["kws"] / f"qcc_{board}.cmake"
        if not (folders.folder["kws"] / f"qcc_{board}.ld").exists():
            assert not path.exists()
            continue
        text = path.read_text()
        assert f'set(CMAKE_C_FLAGS_INIT "{" ".join(TARGETS[board].cpu_flags)}")' in text
        assert "set(CMAKE_C_COMPILER arm-none-eabi-gcc)" in text and f"set(QCC_BOARD {board} CACHE" in text


# --- the host ----------------------------------------------------------------------------------


def test_a_folder_builds_alone_with_strict_flags_and_ctest_runs_its_golden_test(folders, tmp_path):
    build = tmp_path / "build"
    ctest = configured_built_tested(folders.folder["kws"], build, f"-DCMAKE_C_FLAGS={STRICT}")
    assert re.search(r"kws_golden \.+ +Passed", ctest), ctest
    assert "OK: 2 case(s), every output value exact" in ctest
    # the enclosing flags reach every file, and kws's kernels take uint8 alone: one instance of qcc_kernels.c
    commands = compile_commands(build)
    assert len(commands) == 1 + len(runtime_sources(folders.folder["kws"])) + 1  # kws.c, runtime, test_kws.c
    assert all(STRICT in c["command"] and "-std=c99" in c["command"] for c in commands)
    (kernels,) = [c["command"] for c in commands if c["file"].endswith("/qcc_kernels.c")]
    assert "-DQCC_KERNELS_U8_ONLY" in kernels


def test_ctest_fails_when_an_output_is_wrong(folders, tmp_path):
    folder = Path(shutil.copytree(folders.folder["kws"], tmp_path / "kws"))
    test_c = folder / "test_kws.c"
    (out,) = folders.manifest["kws"]["outputs"]
    text = test_c.read_text()
    match = re.search(rf"case1_out_{out['c_name']}\[\d+\] = \{{\s*(\d+)", text)
    value = int(match.group(1))
    test_c.write_text(text[:match.start(1)] + str(value + 1 if value < 255 else value - 1) + text[match.end(1):])
    build = tmp_path / "build"
    assert configure(folder, build).returncode == 0
    built, tested = build_and_test(build)
    assert built.returncode == 0, built.stdout + built.stderr
    assert tested.returncode != 0
    assert "case 1" in tested.stdout and "index 0" in tested.stdout, tested.stdout


def parent_project(root: Path, folders: Folders, names: list[str], main: str | None = None) -> Path:
    """A project of its own that add_subdirectory()s the model folders (and builds main.c with them)."""
    root.mkdir()
    lines = ["cmake_minimum_required(VERSION 3.13)", "project(parent C)", "include(CTest)"]
    lines += [f'add_subdirectory("{folders.folder.get(n, folders.root / n)}" "{n}")' for n in names]
    if main is not None:
        (root / "main.c").write_text(main)
        lines += ["add_executable(app main.c)", f"target_link_libraries(app PRIVATE {' '.join(names)})",
                  "add_test(NAME app COMMAND app)"]
    (root / "CMakeLists.txt").write_text("\n".join(lines) + "\n")
    return root


def main_calling(folders: Folders, names: list[str]) -> str:
    """main.c running each model once on zero codes and printing its first output code."""
    lines = ["#include <stdio.h>", "#include <stdint.h>"] + [f'#include "{n}.h"' for n in names]
    body = []
    for n in names:
        (inp,), (out,) = folders.manifest[n]["inputs"], folders.manifest[n]["outputs"]
        ctype = {"uint8": "uint8_t", "int8": "int8_t"}
        lines += [f"static {ctype[inp['dtype']]} {n}_in[{n.upper()}_INPUT_{inp['c_name'].upper()}_COUNT];",
                  f"static {ctype[out['dtype']]} {n}_out[{n.upper()}_OUTPUT_{out['c_name'].upper()}_COUNT];"]
        body += [f"    if ({n}_run({n}_in, {n}_out) != 0) return 1;", f'    printf("{n} %d\\n", (int){n}_out[0]);']
    return "\n".join(lines + ["int main(void)", "{", *body, "    return 0;", "}"]) + "\n"


def test_two_models_share_one_runtime_compiled_once(folders, tmp_path):
    names = ["kws", "vww"]
    project = parent_project(tmp_path / "parent", folders, names, main_calling(folders, names))
    build = tmp_path / "build"
    ctest = configured_built_tested(project, build, f"-DCMAKE_C_FLAGS={STRICT}")
    for test in ("kws_golden", "vww_golden", "app"):
        assert re.search(rf"{test} \.+ +Passed", ctest), ctest
    assert re.search(r"^\d+: kws -?\d+$", ctest, re.M) and re.search(r"^\d+: vww -?\d+$", ctest, re.M)

    kws, vww = runtime_sources(folders.folder["kws"]), runtime_sources(folders.folder["vww"])
    assert kws - vww and vww - kws and kws & vww  # each folder has a runtime source the other lacks, and both qcc_kernels.c
    union = kws | vww
    # each runtime source compiled once, in the library and nowhere else in the build tree
    commands = [Path(c["file"]).name for c in compile_commands(build)]
    assert sorted(c for c in commands if c.startswith("qcc_")) == sorted(union)
    objects = sorted(p.name for p in build.rglob("qcc_*.o"))
    assert objects == sorted(f"{s}.o" for s in union)
    (library,) = build.rglob("libqcc_runtime.a")
    members = run(tool("ar"), "t", library).stdout.split()
    assert sorted(members) == sorted(f"{s}.o" for s in union)
    # kws takes uint8 and vww int8: qcc_kernels.c compiles both instances
    (kernels,) = [c["command"] for c in compile_commands(build) if c["file"].endswith("/qcc_kernels.c")]
    assert "QCC_KERNELS_" not in kernels


def test_folders_of_two_rounding_schemes_are_refused_at_configure_time(folders, tmp_path):
    project = parent_project(tmp_path / "parent", folders, ["kws", "vww_tflm"])
    configured = configure(project, tmp_path / "build")
    assert configured.returncode != 0
    message = " ".join(configured.stderr.split())
    assert "different rounding schemes" in message and "compile every model with the same --rounding" in message
    assert str(folders.root / "vww_tflm") in message and str(folders.folder["kws"]) in message
    assert not (tmp_path / "build" / "Makefile").exists()


def test_folders_of_two_qcc_versions_are_refused_at_configure_time(folders, tmp_path):
    other = Path(shutil.copytree(folders.folder["vww"], tmp_path / "vww"))
    kernels = other / "qcc_kernels.h"
    kernels.write_text(kernels.read_text() + "/* another version */\n")
    message = refused_parent(tmp_path, (folders.folder["kws"], "kws"), (other, "vww"))
    assert f"{kernels} differs from {folders.folder['kws'] / 'qcc_kernels.h'}" in message
    assert "compile every model with the same qcc" in message



def refused_parent(tmp_path: Path, *added: tuple[Path, str]) -> str:
    """A parent project adding each (folder, binary folder): its configure fails; the message on one line."""
    project = tmp_path / "parent"
    project.mkdir()
    lines = ["cmake_minimum_required(VERSION 3.13)", "project(parent C)"]
    lines += [f'add_subdirectory("{folder}" {binary})' for folder, binary in added]
    (project / "CMakeLists.txt").write_text("\n".join(lines) + "\n")
    configured = configure(project, tmp_path / "build")
    assert configured.returncode != 0
    return " ".join(configured.stderr.split())


def test_two_models_of_one_name_are_refused_at_configure_time(folders, tmp_path):
    message = refused_parent(tmp_path, (folders.folder["kws"], "a"), (folders.folder["kws"], "b"))
    assert "the project has a target named kws already" in message and "--name" in message

# --- the Cortex-M4 -----------------------------------------------------------------------------


def test_the_toolchain_file_cross_compiles_and_ctest_runs_the_golden_test_on_qemu(folders, tmp_path):
    tool("arm-none-eabi-gcc"), tool("qemu-system-arm")
    folder, build = folders.folder["vww"], tmp_path / "build"
    ctest = configured_built_tested(folder, build, f"-DCMAKE_TOOLCHAIN_FILE={folder / 'qcc_cortex-m4.cmake'}",
                                    env={"CFLAGS": STRICT})
    assert re.search(r"vww_golden \.+ +Passed", ctest), ctest
    assert "OK: 2 case(s), every output value exact" in ctest
    assert "-M\" \"mps2-an386\"" in ctest  # the board's QEMU machine ran it
    elf = build / "test_vww_cortex-m4.elf"
    assert elf.read_bytes()[:4] == b"\x7fELF" and elf.read_bytes()[18] == 40  # e_machine: EM_ARM
    for command in compile_commands(build):  # the toolchain's CPU flags and the environment's on every file
        assert "arm-none-eabi-gcc" in command["command"] and "-mcpu=cortex-m4" in command["command"]
        assert STRICT in command["command"]


def run_firmware(folders: Folders, tmp_path: Path, names: list[str]) -> tuple[Path, subprocess.CompletedProcess,
                                                                               subprocess.CompletedProcess]:
    build = tmp_path / "build"
    configured = configure(FIRMWARE_CMAKE, build, "-DQCC_MODELS=" + ";".join(str(folders.folder[n]) for n in names),
                           f"-DFIRMWARE_MODELS={folders.models_def}",
                           *(f"-DINPUT_{n}={folders.input[n]}" for n in names), env={"CFLAGS": STRICT})
    assert configured.returncode == 0, configured.stdout + configured.stderr
    built, tested = build_and_test(build)  # the firmware and each model's golden test, run by ctest
    assert built.returncode == 0, built.stdout + built.stderr
    ran, _ = build_and_test(build, "run")
    return build, ran, tested


def test_the_cmake_firmware_example_runs_both_models_exactly_on_qemu(folders, tmp_path):
    tool("arm-none-eabi-gcc"), tool("qemu-system-arm")
    build, ran, tested = run_firmware(folders, tmp_path, ["kws", "vww"])
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for name, expected in folders.expected.items():  # QEMU's semihosting console is its stderr
        line = re.search(rf"^{name}:(.*)$", ran.stdout + ran.stderr, re.M)
        assert line, ran.stdout + ran.stderr
        assert [int(v) for v in line.group(1).split()] == expected.reshape(-1).tolist()
    # ctest: the firmware, and each model's golden test on the board
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "100% tests passed, 0 tests failed out of 3" in tested.stdout
    # the image holds both models, their constants in the section sections.ld places, the runtime once
    symbols = run(tool("arm-none-eabi-nm"), build / "firmware.elf").stdout
    assert re.search(r" kws_run$", symbols, re.M) and re.search(r" vww_run$", symbols, re.M)
    headers = run(tool("arm-none-eabi-objdump"), "-h", build / "firmware.elf").stdout
    assert ".model_weights" in headers and ".model_arena" in headers
    kernels = [p for p in build.rglob("qcc_kernels.c.obj")]
    assert len(kernels) == 1


# --- ESP-IDF and Zephyr, faked -----------------------------------------------------------------

FAKE_IDF = """cmake_minimum_required(VERSION 3.13)
project(fake_idf C)
set(ESP_PLATFORM 1)
# ESP-IDF's registration: a library named after the component's folder, its name in COMPONENT_LIB
function(idf_component_register)
  cmake_parse_arguments(arg "" "" "SRCS;INCLUDE_DIRS" ${ARGN})
  get_filename_component(component "${CMAKE_CURRENT_SOURCE_DIR}" NAME)
  add_library(__idf_${component} STATIC ${arg_SRCS})
  target_include_directories(__idf_${component} PUBLIC ${arg_INCLUDE_DIRS})
  message(STATUS "fake-idf: component ${component}: SRCS ${arg_SRCS} INCLUDE_DIRS ${arg_INCLUDE_DIRS}")
  set(COMPONENT_LIB __idf_${component} PARENT_SCOPE)
endfunction()
include(CTest)
add_subdirectory("@KWS@" kws)
add_subdirectory("@VWW@" vww)
add_executable(app main.c)
target_link_libraries(app PRIVATE __idf_kws kws __idf_vww)
"""

FAKE_ZEPHYR = """cmake_minimum_required(VERSION 3.13)
project(fake_zephyr C)
set(ZEPHYR_BASE "${CMAKE_CURRENT_SOURCE_DIR}")
add_library(zephyr_interface INTERFACE)
macro(zephyr_library_named name)
  set(ZEPHYR_CURRENT_LIBRARY ${name})
  add_library(${name} STATIC "")
  target_link_libraries(${name} PUBLIC zephyr_interface)
  set_property(GLOBAL APPEND PROPERTY ZEPHYR_LIBS ${name})
  message(STATUS "fake-zephyr: library ${name}")
endmacro()
function(zephyr_library_sources)
  target_sources(${ZEPHYR_CURRENT_LIBRARY} PRIVATE ${ARGN})
  message(STATUS "fake-zephyr: ${ZEPHYR_CURRENT_LIBRARY} sources ${ARGN}")
endfunction()
function(zephyr_include_directories)
  target_include_directories(zephyr_interface INTERFACE ${ARGN})
  message(STATUS "fake-zephyr: include ${ARGN}")
endfunction()
include(CTest)
add_subdirectory("@KWS@" modules/kws)
add_subdirectory("@VWW@" modules/vww)
# the application: every Zephyr library, and the include directories of zephyr_interface only
get_property(libraries GLOBAL PROPERTY ZEPHYR_LIBS)
add_executable(app main.c)
target_link_libraries(app PRIVATE zephyr_interface ${libraries})
"""


def fake_project(kind: str, text: str, folders: Folders, tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess]:
    project = tmp_path / kind
    project.mkdir()
    (project / "CMakeLists.txt").write_text(text.replace("@KWS@", str(folders.folder["kws"]))
                                            .replace("@VWW@", str(folders.folder["vww"])))
    (project / "main.c").write_text(main_calling(folders, ["kws", "vww"]))
    build = tmp_path / f"{kind}_build"
    configured = configure(project, build)
    assert configured.returncode == 0, configured.stdout + configured.stderr
    return build, configured


def assert_app_runs_without_golden_tests(build: Path) -> None:
    built = run(tool("cmake"), "--build", build, "-j4")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "test_kws" not in built.stdout and "qcc_startup" not in built.stdout
    app = run(build / "app")
    assert app.returncode == 0 and app.stdout.startswith("kws "), app.stdout + app.stderr
    listed = run(tool("ctest"), "--test-dir", build, "-N")
    assert "Total Tests: 0" in listed.stdout, listed.stdout


def test_as_an_esp_idf_component_it_registers_itself(folders, tmp_path):
    build, configured = fake_project("idf", FAKE_IDF, folders, tmp_path)
    for name in ("kws", "vww"):
        assert f"fake-idf: component {name}: SRCS {name}.c INCLUDE_DIRS ." in configured.stdout, configured.stdout
    assert configured.stdout.count("fake-idf:") == 2
    assert_app_runs_without_golden_tests(build)
    # the runtime is linked to the components, each of its sources compiled once
    commands = [Path(c["file"]).name for c in compile_commands(build)]
    assert sorted(c for c in commands if c.startswith("qcc_")) == sorted(runtime_sources(folders.folder["kws"])
                                                                       | runtime_sources(folders.folder["vww"]))


def test_esp_idf_early_expansion_only_registers(folders, tmp_path):
    """ESP-IDF's first pass runs the CMakeLists.txt as a script, where only idf_component_register may run."""
    script = tmp_path / "early.cmake"
    script.write_text("function(idf_component_register)\n  message(STATUS \"early: ${ARGN}\")\nendfunction()\n"
                      f'include("{folders.folder["kws"]}/CMakeLists.txt")\nmessage(STATUS "early: done")\n')
    result = run(tool("cmake"), "-DCMAKE_BUILD_EARLY_EXPANSION=1", "-P", script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["-- early: SRCS;kws.c;INCLUDE_DIRS;.", "-- early: done"], result.stdout


def test_as_a_zephyr_module_it_registers_itself(folders, tmp_path):
    build, configured = fake_project("zephyr", FAKE_ZEPHYR, folders, tmp_path)
    out = configured.stdout
    # the runtime as a Zephyr library once, each model as its own with its folder as an include directory
    assert out.count("fake-zephyr: library qcc_runtime") == 1
    for name in ("kws", "vww"):
        assert f"fake-zephyr: library {name}" in out
        assert f"fake-zephyr: {name} sources {folders.folder[name] / f'{name}.c'}" in out
        assert f"fake-zephyr: include {folders.folder[name]}" in out
    assert_app_runs_without_golden_tests(build)
