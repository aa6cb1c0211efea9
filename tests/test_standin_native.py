"""The lab's native vcgencmd and nvpmodel fronts answer as the Python stand-ins do, and hand the rest to them.

Each case sets a simulated board's files, then runs the front (as the lab publishes it) and the Python
stand-in from farm_lab/standins (as the lab ran it before) with the same arguments and environment,
and compares stdout, stderr and exit code. A marker script in place of the published TOOL.py shows
which calls reach Python and which the front answers alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from farm_lab import board_hardware, hardware, standin_native
from farm_lab.account import lab_account
from farm_lab.lab import Lab

THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
THERMAL = "sys/devices/virtual/thermal/thermal_zone0/temp"
ARM_FREQ = "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"
CONF = "etc/nvpmodel.conf"
STATUS = "var/lib/nvpmodel/status"
MARKER = "#!/usr/bin/env python3\nimport sys\nprint('PYTHON STAND-IN', sys.argv[1:])\n"


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        built = standin_native.build(tmp_path_factory.mktemp("cache"))
    except standin_native.CompilerMissing as exc:
        pytest.skip(str(exc))
    return board_hardware.publish_tools(tmp_path_factory.mktemp("public"), built)


def run(command: list[str], root: Path | str | None, cwd: Path | None = None) -> tuple[int, str, str]:
    # The PATH a lab host has (the python3 both sides exec is the system's, not a version manager's shim).
    env = {k: v for k, v in os.environ.items() if k != "FARM_DEVICE_ROOT"}
    env["PATH"] = os.pathsep.join(board_hardware.SYSTEM_PATH)
    if root is not None:
        env["FARM_DEVICE_ROOT"] = str(root)
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    return done.returncode, done.stdout, done.stderr


def same(tools: Path, tool: str, args: list[str], root: Path | str | None, cwd: Path | None = None) -> tuple:
    """The front's (code, stdout, stderr), asserted equal to the Python stand-in's."""
    front = run([str(tools / tool), *args], root, cwd)
    python = run([str(hardware.standins_dir() / tool), *args], root, cwd)
    assert front == python, f"{tool} {args}"
    return front


def write(root: Path, relative: str, text: str | bytes | None) -> None:
    """The file's content, or no file at all (None)."""
    path = root / relative
    if text is None:
        path.unlink()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)


@pytest.fixture
def pi(tmp_path: Path) -> Path:
    hardware.install_rpi(tmp_path / "pi", "4B")
    return tmp_path / "pi"


@pytest.fixture
def nano(tmp_path: Path) -> Path:
    hardware.install_jetson_nano(tmp_path / "nano")
    return tmp_path / "nano"


def test_the_front_is_native_and_the_python_stand_in_sits_beside_it(tools: Path) -> None:
    for tool in standin_native.TOOLS:
        assert (tools / tool).read_bytes()[:4] == b"\x7fELF"
        assert (tools / f"{tool}.py").read_bytes() == (hardware.standins_dir() / tool).read_bytes()
    assert not (tools / "native").exists()


@pytest.mark.parametrize("flags", [None, "0\n", "50005\n", "0x50005", "80008\n", "ffffffff\n", "zz\n", "-5\n",
                                   "", "0x\n", "000000000000000000000001\n"])
def test_vcgencmd_get_throttled(tools: Path, pi: Path, flags: str | None) -> None:
    write(pi, THROTTLED, flags)
    code, out, _ = same(tools, "vcgencmd", ["get_throttled"], pi)
    assert code == 0 and out.startswith("throttled=0x")


@pytest.mark.parametrize("millidegrees", ["47200", "47250\n", "-1", "0", "85049", None])
def test_vcgencmd_measure_temp(tools: Path, pi: Path, millidegrees: str | None) -> None:
    if millidegrees is None:
        (pi / THERMAL).unlink()  # sys/class/thermal/thermal_zone0 links to its folder: both are gone
    else:
        write(pi, THERMAL, millidegrees)
    code, out, _ = same(tools, "vcgencmd", ["measure_temp"], pi)
    assert (code, out) == (1, 'error=1 error_msg="Command not registered"\n') if millidegrees is None else code == 0


@pytest.mark.parametrize("model", ["4B", "3B"])
@pytest.mark.parametrize("clock", ["arm", "core", "v3d"])
def test_vcgencmd_measure_clock(tools: Path, tmp_path: Path, model: str, clock: str) -> None:
    hardware.install_rpi(tmp_path, model)
    assert same(tools, "vcgencmd", ["measure_clock", clock], tmp_path)[0] == 0
    (tmp_path / ARM_FREQ).unlink()
    same(tools, "vcgencmd", ["measure_clock", clock, "extra"], tmp_path)


def test_vcgencmd_on_a_board_that_is_no_pi_and_without_a_board(tools: Path, nano: Path, tmp_path: Path) -> None:
    assert same(tools, "vcgencmd", ["get_throttled"], nano)[0] == 127
    for root in (None, "", "/", "/tmp/..", "//", "."):
        same(tools, "vcgencmd", ["get_throttled"], root, cwd=Path("/"))
    assert same(tools, "vcgencmd", ["get_throttled"], None)[0] == 2
    # A model file with bytes that are not ASCII goes to Python, which decodes them as it always did.
    write(tmp_path, "proc/device-tree/model", "Raspberry Pi 4 Model B – Rev 1.4\0".encode())
    assert same(tools, "vcgencmd", ["get_throttled"], tmp_path)[0] == 0


@pytest.mark.parametrize("args", [[], ["commands"], ["measure_clock"], ["get_config", "int"], ["-t", "get_throttled"]])
def test_vcgencmd_other_commands_are_the_python_stand_ins(tools: Path, pi: Path, args: list[str]) -> None:
    same(tools, "vcgencmd", args, pi)


@pytest.mark.parametrize("status", ["pmode:0000\n", "pmode:0001\n", "pmode:0001 fmode:quiet\n", "fmode:quiet",
                                    "pmode:0007\n", "pmode:x pmode:1", None])
def test_nvpmodel_query(tools: Path, nano: Path, status: str | None) -> None:
    write(nano, STATUS, status)
    code, out, _ = same(tools, "nvpmodel", ["-q"], nano)
    assert code == 0 and out.startswith("NV Power Mode: ")
    same(tools, "nvpmodel", ["--query"], nano)


def test_nvpmodel_query_follows_a_mode_change(tools: Path, nano: Path) -> None:
    assert run([str(tools / "nvpmodel"), "-m", "1"], nano)[0] == 0
    assert same(tools, "nvpmodel", ["-q"], nano)[1] == "NV Power Mode: 5W\n1\n"


@pytest.mark.parametrize("conf", [
    None, "", "# nothing\n",
    "<POWER_MODEL ID=3 NAME=A>\n<POWER_MODEL ID=4 NAME=B NAME=C>\n",  # no PM_CONFIG: the first model
    "<PM_CONFIG DEFAULT=4>\n<POWER_MODEL ID=4 NAME=X>  # comment\nCPU_ONLINE CORE_1 1\n",
    "<PARAM TYPE=FILE NAME=CPU_ONLINE>\nCORE_1 /sys/x\n<POWER_MODEL ID=0 NAME=M>\nCPU_ONLINE CORE_1\n",
    "< POWER_MODEL\tID=2 NAME=T >\n<OTHER x=1>\n",
    "<PM_CONFIG DEFAULT=0>\nlonely line\n",  # a line outside a section: Python's NVPM ERROR
    "<POWER_MODEL ID=0 NAME=M>\nonefield\n",
    "<POWER_MODEL NAME=M>\n",  # no ID: Python's traceback
    "<POWER_MODEL ID=x1 NAME=M>\n",
    "<PARAM>\n",
    "<POWER_MODEL ID=0 NAME=caf\u00e9>\n",
])
def test_nvpmodel_query_on_other_configs(tools: Path, nano: Path, conf: str | None) -> None:
    if conf is None:
        (nano / CONF).unlink()
    else:
        write(nano, CONF, conf)
    front = run([str(tools / "nvpmodel"), "-q"], nano)
    python = run([str(hardware.standins_dir() / "nvpmodel"), "-q"], nano)
    if "Traceback" in python[2]:  # the script's path is in it; the front hands over to the script all the same
        assert (front[0], front[2].splitlines()[-1]) == (python[0], python[2].splitlines()[-1])
    else:
        assert front == python


def test_nvpmodel_without_a_board_and_its_other_uses(tools: Path, nano: Path) -> None:
    assert same(tools, "nvpmodel", ["-q"], None)[0] == 2
    for args in (["-p", "--verbose"], ["-h"], ["-x"], ["-m"], ["-m", "one"], ["-q", "--verbose"], []):
        same(tools, "nvpmodel", args, nano)
    # Python's message names the tool, not the TOOL.py the front execs.
    assert same(tools, "nvpmodel", ["-m", "0"], None)[2].startswith("nvpmodel: FARM_DEVICE_ROOT")


def test_only_the_per_contact_queries_stay_out_of_python(tools: Path, tmp_path: Path, pi: Path, nano: Path) -> None:
    marked = tmp_path / "marked"
    marked.mkdir()
    for tool in standin_native.TOOLS:
        shutil.copy2(tools / tool, marked / tool)
        (marked / f"{tool}.py").write_text(MARKER)
    for tool, root, args in (("vcgencmd", pi, ["get_throttled"]), ("vcgencmd", pi, ["measure_temp"]),
                             ("vcgencmd", pi, ["measure_clock", "arm"]), ("nvpmodel", nano, ["-q"])):
        code, out, _ = run([str(marked / tool), *args], root)
        assert code == 0 and "PYTHON STAND-IN" not in out
    for tool, root, args in (("vcgencmd", pi, ["unknown_command", "a b"]), ("vcgencmd", pi, []),
                             ("nvpmodel", nano, ["-m", "1"]), ("nvpmodel", nano, ["-p", "--verbose"])):
        assert run([str(marked / tool), *args], root) == (0, f"PYTHON STAND-IN {args!r}\n", "")


def test_without_a_c_compiler_the_lab_says_so_once_and_publishes_the_python_stand_ins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-compiler"
    empty.mkdir()
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(empty))  # no cc, no gcc: what a machine without a compiler has
    lines: list[str] = []
    lab = Lab(tmp_path / "lab", cache=tmp_path / "cache")
    native = lab._build_native_tools(lab_account(), lines.append)
    assert native is None
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "no C compiler" in lines[0]
    tools = board_hardware.publish_tools(tmp_path / "public", native)
    for tool in standin_native.TOOLS:
        assert (tools / tool).read_bytes() == (hardware.standins_dir() / tool).read_bytes()
        assert not (tools / f"{tool}.py").exists()
