"""The seeds' published tables (SEEDS §1 and §2) as references, so farm's own runs sit beside them.

SEEDS §1 gives means of 20 runs of DeepLab v3 (MobileNet v2, depth multiplier 0.5) at 1–4 threads on a
Raspberry Pi 3 B+ and a Jetson Nano, as an Edge TPU model and as a plain quantized model; the shared
models directory holds that pair as deeplabv3_mnv2_dm05_pascal_quant(_edgetpu).tflite. SEEDS §2 gives the
Jetson Nano at 10W and 5W with the USB Accelerator on USB3 (5000 Mb/s) and USB2 (480 Mb/s). The board names
are the simulated lab's (farm lab: rpi3b+, jetson-nano).
"""

from __future__ import annotations

from .model import Reference

SECTION_1 = "SEEDS §1"
SECTION_2 = "SEEDS §2"
# (board, Coral's model file stem) -> (Edge TPU ms at 1..4 threads, CPU ms at 1..4 threads)
DEEPLAB = {
    ("rpi3b+", "deeplabv3_mnv2_dm05_pascal_quant"): ((459, 377, 352, 333), (862, 537, 445, 385)),
    ("rpi3b+", "deeplabv3_mnv2_pascal_quant"): ((834, 668, 561, 511), (1873, 1070, 763, 674)),
    ("jetson-nano", "deeplabv3_mnv2_dm05_pascal_quant"): ((213, 172, 159, 153), (368, 240, 198, 179)),
    ("jetson-nano", "deeplabv3_mnv2_pascal_quant"): ((363, 262, 224, 209), (736, 432, 333, 284)),
}
# model -> {power mode: (CPU ms, Edge TPU USB3 ms, Edge TPU USB2 ms)}; the CPU ran at 4 threads at 10W
# (4 cores) and 2 at 5W (2 cores).
NANO = {
    "conv_stack-l10": {"10W": (1200.5, 7.8, 8.5), "5W": (1725.5, 11.8, 12.0)},
    "conv_stack-l300": {"10W": (39274.7, 249.1, 397.0)},
    "mobilenet_v1_1.0_224_quant": {"10W": (107.4, 2.4, 8.5), "5W": (159.4, 3.5, 11.0)},
    "mobilenet_v2_1.0_224_quant": {"10W": (89.7, 2.5, 10.0), "5W": (133.7, 3.5, 14.5)},
    "ssd_mobilenet_v1_coco_quant_postprocess": {"10W": (149.3, 11.5, 32.8), "5W": (222.4, 16.2, 49.8)},
}
NANO_THREADS = {"10W": 4, "5W": 2}
# §2 does not say which statistic it tabled; farm's report tests read its figures as medians.
SECTION_2_STAT = "median"


def seed_references() -> list[Reference]:
    out: list[Reference] = []
    for (board, model), (tpu, cpu) in DEEPLAB.items():
        for threads in range(1, 5):
            out.append(Reference(board, model + "_edgetpu", "edgetpu", float(tpu[threads - 1]), SECTION_1,
                                 {"threads": threads}))
            out.append(Reference(board, model, "cpu", float(cpu[threads - 1]), SECTION_1, {"threads": threads}))
    for model, modes in NANO.items():
        compiled = model + "_edgetpu"  # matches a farm-compiled twin through its source model too
        for mode, (cpu_ms, usb3_ms, usb2_ms) in modes.items():
            out.append(Reference("jetson-nano", model, "cpu", cpu_ms, SECTION_2,
                                 {"power_mode": mode, "threads": NANO_THREADS[mode]}, stat=SECTION_2_STAT))
            for speed, ms in ((5000, usb3_ms), (480, usb2_ms)):
                out.append(Reference("jetson-nano", compiled, "edgetpu", ms, SECTION_2,
                                     {"power_mode": mode, "usb_speed": speed}, stat=SECTION_2_STAT))
    return out
