"""Edge TPUs on this device: USB accelerators by port and speed, PCIe ones, and libedgetpu.

Everything is read below the device root: USB devices from
``/sys/bus/usb/devices``, PCIe TPUs as ``/dev/apex_N``, the library in the usual
lib directories and its package in dpkg's status file.

The ``usb:N`` index a job passes to libedgetpu is an enumeration index, not a
port: libedgetpu lists USB TPUs that still wait for their firmware (1a6e:089a)
before those that run it (18d1:9302), each group in libusb's order. Where
pycoral works on the real board we take libedgetpu's own list (``order:
"libedgetpu"``). Elsewhere we reproduce it (``order: "assumed"``): libusb's
Linux backend discovers devices in udev's order, sorted by sysfs path, and adds
each at the head of its list, so ``libusb_get_device_list`` returns them in
reverse sysfs-path order. A TPU loading its firmware re-enumerates, which can
shift the indexes, so resolve a port right before loading the delegate.
"""

import importlib
import os
import re

from .facts import device_root, read_text, root_path

USB_STATES = {("1a6e", "089a"): "dfu", ("18d1", "9302"): "app"}
LIBRARY = "libedgetpu.so.1"
LIB_DIRS = ("usr/lib/aarch64-linux-gnu", "usr/lib/arm-linux-gnueabihf", "usr/lib/x86_64-linux-gnu",
            "lib/aarch64-linux-gnu", "lib/arm-linux-gnueabihf", "lib/x86_64-linux-gnu",
            "usr/local/lib", "usr/lib", "lib")
PACKAGES = ("libedgetpu1-std", "libedgetpu1-max", "libedgetpu1-legacy-std", "libedgetpu1-legacy-max")
SPEED_NAMES = {1: "USB 1.x Low Speed", 12: "USB 1.x Full Speed", 480: "USB 2.0 High Speed",
               5000: "USB 3.0 SuperSpeed", 10000: "USB 3.1 SuperSpeed+", 20000: "USB 3.2 SuperSpeed+ 2x2"}
# The words the simulated lab's stand-in library puts in its edgetpu_version(): every result measured
# on it is marked simulated.
STANDIN_MARK = "stand-in"
INSTALL_HINT = ("install the Edge TPU runtime from Coral's apt repository: "
                "sudo apt-get install libedgetpu1-std (or libedgetpu1-max for the maximum clock)")


class EdgeTpuError(Exception):
    """A job's Edge TPU cannot be used; ``reason`` is a stable code, the message says why and what to do.

    Reasons: library-missing, no-edgetpu, port-missing, not-edgetpu, wrong-speed, device-missing, bad-request.
    """

    def __init__(self, reason, message):
        Exception.__init__(self, message)
        self.reason = reason
        self.message = message


# --- USB --------------------------------------------------------------------------------------------

def _attr(name, attribute):
    text = read_text("sys/bus/usb/devices", name, attribute)
    return text.strip() if text is not None else None


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else value


def usb_devices():
    """Every USB device (root hubs and interfaces left out), Edge TPU or not, by sysfs port path."""
    base = root_path("sys/bus/usb/devices")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    found = []
    for name in names:
        # usbN are root hubs; "2-1:1.0" are a device's interfaces, not devices.
        if name.startswith("usb") or ":" in name:
            continue
        vendor, product = _attr(name, "idVendor"), _attr(name, "idProduct")
        if not vendor or not product:
            continue
        found.append({
            "port": name,
            "vendor_id": vendor.lower(),
            "product_id": product.lower(),
            "state": USB_STATES.get((vendor.lower(), product.lower())),
            "speed": _number(_attr(name, "speed")),
            "bus": _number(_attr(name, "busnum")),
            "devnum": _number(_attr(name, "devnum")),
            "manufacturer": _attr(name, "manufacturer"),
            "product": _attr(name, "product"),
            "_order": _sysfs_path(base, name),
        })
    return found


def _sysfs_path(base, name):
    """The device's path under /sys/devices, which udev sorts by; rebuilt when sysfs is plain folders."""
    folder = os.path.join(base, name)
    if os.path.islink(folder):
        return os.path.realpath(folder)
    bus, _, chain = name.partition("-")
    ports = chain.split(".")
    # usb1/1-1/1-1.2, the nesting a kernel gives a device behind a hub.
    return "usb{}/".format(bus) + "/".join("{}-{}".format(bus, ".".join(ports[:depth]))
                                           for depth in range(1, len(ports) + 1))


def _assumed_usb_order(tpus):
    dfu = sorted((t for t in tpus if t["state"] == "dfu"), key=lambda t: t["_order"], reverse=True)
    app = sorted((t for t in tpus if t["state"] == "app"), key=lambda t: t["_order"], reverse=True)
    return dfu + app


def _libedgetpu_order():
    """libedgetpu's own enumeration through pycoral, only on the real board (device root /)."""
    if os.path.abspath(device_root()) != "/":
        return None
    try:
        edgetpu = importlib.import_module("pycoral.utils.edgetpu")
        return [(str(t.get("type")), os.path.basename(str(t.get("path")))) for t in edgetpu.list_edge_tpus()]
    except Exception:  # noqa: BLE001 - no pycoral or no libedgetpu: fall back to the assumed order
        return None


def pci_devices():
    """PCIe Edge TPUs (the Dev Board's, M.2 and mini-PCIe cards): /dev/apex_N, in N's order."""
    folder = root_path("dev")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    numbered = sorted(int(m.group(1)) for m in (re.match(r"^apex_(\d+)$", n) for n in names) if m)
    return [{"type": "pci", "path": "/dev/apex_{}".format(n), "port": None, "speed": None} for n in numbered]


# --- the library --------------------------------------------------------------------------------------

PACKAGE_MARK = "libedgetpu1-"  # in every name of PACKAGES
# Patterns, not compiled ones: re compiles (and keeps) them the first time a status file names libedgetpu,
# where compiling them at import was paid by every start.
PARAGRAPH_END = r"\n\s*\n"
FIELD = r"^([A-Za-z-]+):[ \t]*(.*)$"


def _dpkg_packages():
    """{package: version} of the installed libedgetpu packages, from dpkg's status file.

    The file lists every package (0.7 MB on a plain Debian): parsing all of it was 40 of a PC's
    50 ms of ``facts``. Only the paragraphs that hold a libedgetpu name are parsed, the same way.
    """
    text = read_text("var/lib/dpkg/status") or ""
    found = {}
    for paragraph in _paragraphs_with(text, PACKAGE_MARK):
        fields = dict(re.findall(FIELD, paragraph, re.MULTILINE))
        if fields.get("Package") in PACKAGES and "installed" in fields.get("Status", "").split():
            found[fields["Package"]] = fields.get("Version")
    return found


def _paragraphs_with(text, mark):
    """The paragraphs of ``text`` (what ``re.split(PARAGRAPH_END, text)`` yields) that contain ``mark``, in order."""
    paragraphs, at = [], text.find(mark)
    while at >= 0:
        end = re.compile(PARAGRAPH_END).search(text, at)
        stop = end.start() if end else len(text)
        paragraphs.append(text[_paragraph_start(text, at):stop])
        at = text.find(mark, end.end()) if end else -1
    return paragraphs


def _paragraph_start(text, at):
    """Where the paragraph holding ``text[at]`` (not whitespace) starts: after the nearest line before it
    that is blank and follows a newline, which is where a paragraph end (a newline, whitespace, a newline,
    as many lines of it as there are) stops."""
    line_end = text.rfind("\n", 0, at)
    while line_end >= 0:
        line_start = text.rfind("\n", 0, line_end)
        if line_start < 0:
            return 0  # the first line: no newline before it, so no paragraph end either
        if not text[line_start + 1:line_end].strip():  # str.strip() strips what the pattern's \s matches
            return line_end + 1
        line_end = line_start
    return 0


def library():
    """Where libedgetpu.so.1 is (a board path), which file it resolves to, and its package."""
    dirs = list(LIB_DIRS)
    if os.path.abspath(device_root()) == "/":
        dirs = [d.lstrip("/") for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d] + dirs
    path = target = None
    for folder in dirs:
        candidate = root_path(folder, LIBRARY)
        if os.path.exists(candidate):
            path, target = "/" + folder.strip("/") + "/" + LIBRARY, os.path.basename(os.path.realpath(candidate))
            break
    packages = _dpkg_packages()
    package = min(packages) if packages else None
    runtime = _runtime_version(root_path(path.lstrip("/"))) if path else None
    simulated = bool(runtime and STANDIN_MARK in runtime)
    version = packages.get(package) if package else None
    info = {"name": LIBRARY, "path": path, "target": target, "package": package,
            # A stand-in comes from no package: it says what it is in its version string.
            "version": version or ("stand-in" if simulated else None), "runtime_version": runtime,
            "simulated": simulated, "error": None}
    if path is None:
        info["error"] = "{} is not installed (looked in {}{}); {}".format(
            LIBRARY, ", ".join("/" + d for d in dirs),
            "; dpkg lists {} {} but the file is gone".format(package, info["version"]) if package else "",
            INSTALL_HINT)
    return info


def _runtime_version(path):
    """The library's own ``edgetpu_version()`` text (what pycoral's get_runtime_version() returns), or None.

    Loading libedgetpu opens no device; a library built for another machine, or one without the call,
    simply has no runtime version here.
    """
    try:
        import ctypes

        call = ctypes.CDLL(path).edgetpu_version
        call.restype = ctypes.c_char_p
        text = call()
    except (OSError, AttributeError, TypeError, ValueError):
        return None
    return text.decode("utf-8", "replace") if text else None


def pycoral():
    """pycoral's version where it imports; its absence is normal (tflite_runtime does the work)."""
    try:
        module = importlib.import_module("pycoral")
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        return {"present": False, "version": None, "error": "{}: {}".format(type(exc).__name__, exc)}
    return {"present": True, "version": getattr(module, "__version__", None), "error": None}


# --- discovery and resolution ----------------------------------------------------------------------------

def discover():
    """The Edge TPUs, library and pycoral of this device, as facts.

    {"devices": [{"device": "usb:0", "type": "usb", "port": "2-1", "speed": 5000,
                  "speed_name": "USB 3.0 SuperSpeed", "state": "app", "vendor_id": "18d1",
                  "product_id": "9302", "bus": 2, "devnum": 3}, {"device": "pci:0", "type": "pci",
                  "path": "/dev/apex_0", "port": null, "speed": null}],
     "library": {...library()...}, "pycoral": {...pycoral()...},
     "order": "libedgetpu" or "assumed", "warnings": [...]}
    """
    tpus = [d for d in usb_devices() if d["state"]]
    order, warnings = "assumed", []
    listed = _libedgetpu_order()
    if listed is not None:
        rank = {path: index for index, (kind, path) in enumerate(listed) if kind == "usb"}
        ordered = sorted(tpus, key=lambda t: rank.get(t["port"], len(rank)))
        order = "libedgetpu"
    else:
        ordered = _assumed_usb_order(tpus)
    devices = []
    for index, tpu in enumerate(ordered):
        entry = {k: v for k, v in tpu.items() if not k.startswith("_") and k not in ("manufacturer", "product")}
        entry.update(device="usb:{}".format(index), type="usb", speed_name=SPEED_NAMES.get(tpu["speed"]))
        devices.append(entry)
    for index, tpu in enumerate(pci_devices()):
        entry = dict(tpu)
        entry["device"] = "pci:{}".format(index)
        devices.append(entry)
    if any(t["state"] == "dfu" for t in tpus) and len(tpus) > 1:
        warnings.append("USB Edge TPU(s) on {} still wait for their firmware; loading it re-enumerates them, "
                        "which can change usb:N indexes: resolve ports right before loading the delegate".format(
                            ", ".join(t["port"] for t in tpus if t["state"] == "dfu")))
    return {"devices": devices, "library": library(), "pycoral": pycoral(), "order": order, "warnings": warnings}


def _describe(tpu):
    if tpu["type"] == "pci":
        return "{} ({})".format(tpu["device"], tpu["path"])
    return "{} on port {} at {} Mb/s".format(tpu["device"], tpu["port"], tpu["speed"])


def _speed_text(speed):
    name = SPEED_NAMES.get(speed)
    return "{} Mb/s ({})".format(speed, name) if name else "{} Mb/s".format(speed)


def resolve(request, ports=None, found=None, need_library=True):
    """The Edge TPU a job's request names, as the device string libedgetpu takes.

    ``request``: the job's ``edgetpu`` object, {"port": "2-1" or an inventory name,
    "expect_speed": 5000, "device": "usb:0"}, all optional; None or {} takes the
    first TPU. ``ports``: the inventory's names, {"usb3-left": {"port": "2-1",
    "speed": 5000}}; a name's speed is expected unless the request says otherwise.
    ``found``: a ``discover()`` result (taken now when None).

    Returns the TPU's discovery entry plus "name" (the inventory name or None),
    "expect_speed" and "requested"; raises EdgeTpuError with the reason.
    ``need_library=False`` resolves the port even without libedgetpu, so a job
    that cannot run can still say which TPU, port and speed it would have used.
    """
    found = found if found is not None else discover()
    request = dict(request or {})
    if need_library and not found["library"]["path"]:
        raise EdgeTpuError("library-missing", found["library"]["error"])
    tpus = found["devices"]
    if not tpus:
        raise EdgeTpuError("no-edgetpu", "no Edge TPU on this device: no USB device 1a6e:089a or 18d1:9302 under "
                                         "/sys/bus/usb/devices and no /dev/apex_N")
    name, port, expect = None, request.get("port"), request.get("expect_speed")
    if port and ports and port in ports:
        name, entry = port, ports[port] or {}
        port = entry.get("port")
        if expect is None:
            expect = entry.get("speed")
    listing = "; ".join(_describe(t) for t in tpus)
    if request.get("device"):
        matches = [t for t in tpus if t["device"] == request["device"]]
        if not matches:
            raise EdgeTpuError("device-missing", "no Edge TPU {}; this device has: {}".format(
                request["device"], listing))
        if port and matches[0].get("port") != port:
            raise EdgeTpuError("bad-request", "the job asks for {} and for port {}, but {} is {}".format(
                request["device"], port, request["device"], _describe(matches[0])))
    elif port:
        matches = [t for t in tpus if t.get("port") == port]
        if not matches:
            raise _missing_port(port, name, listing)
    else:
        matches = tpus[:1]
    tpu = dict(matches[0])
    if expect is not None and tpu.get("speed") != expect:
        raise EdgeTpuError("wrong-speed", "the Edge TPU {} runs at {}, the job expects {}: plug it straight "
                                          "into a USB 3 port (not through a USB 2 hub) with a USB 3 cable".format(
                                              _describe(tpu), _speed_text(tpu.get("speed")), _speed_text(expect)))
    tpu.update(name=name, expect_speed=expect, requested=request)
    return tpu


def _missing_port(port, name, listing):
    label = "{} ({})".format(port, name) if name else port
    other = [d for d in usb_devices() if d["port"] == port]
    if other:
        device = other[0]
        what = " ".join(p for p in (device["manufacturer"], device["product"]) if p)
        return EdgeTpuError("not-edgetpu", "USB port {} holds {}:{}{}, not an Edge TPU; Edge TPUs here: {}".format(
            label, device["vendor_id"], device["product_id"], " ({})".format(what) if what else "", listing))
    return EdgeTpuError("port-missing", "no device on USB port {}; Edge TPUs here: {}".format(label, listing))
