"""The C toolchain and the machines the generated C runs on: building and running an output folder
(build.py), the --target Cortex-M targets (targets.py), running an image on a target's QEMU board
(qemu.py), counting its executed instructions (insn_count.py), and timing the C on the host
beside ONNX Runtime (host_timing.py)."""
