"""Open an SSH ``direct-streamlocal@openssh.com`` channel: a stream to a Unix socket on the host.

OpenSSH (6.7 and later) serves it inside sshd, with no shell and no process started: what makes a
lingering agent (agent/linger.py) cheaper to reach than any command. paramiko has no public call
for it (paramiko issue #544, open since 2015): ``Transport.open_channel`` writes the extra fields
only for the channel kinds it knows. This module builds the open request itself (its fields are
in OpenSSH's PROTOCOL file, section 2.4: socket path, a reserved string, a reserved uint32) and
otherwise does what ``open_channel`` does, with the same paramiko internals; tests open one
against the lab's real sshd, so a paramiko release that changes them fails there, not in a lab.
"""

from __future__ import annotations

import threading
import time

import paramiko
from paramiko.common import cMSG_CHANNEL_OPEN
from paramiko.message import Message

KIND = "direct-streamlocal@openssh.com"


class StreamLocalRefused(paramiko.SSHException):
    """The server would not open the stream: no socket there, nobody listening, or forwarding is off.

    OpenSSH answers all three alike ("open failed", reason 2: connect failed), so the reason says nothing.
    """


def open_streamlocal(transport: paramiko.Transport, path: str, timeout: float) -> paramiko.Channel:
    if not transport.is_active():
        raise paramiko.SSHException("SSH session not active")
    with transport.lock:
        window = transport._sanitize_window_size(None)
        packet = transport._sanitize_packet_size(None)
        number = transport._next_channel()
        message = Message()
        message.add_byte(cMSG_CHANNEL_OPEN)
        message.add_string(KIND)
        message.add_int(number)
        message.add_int(window)
        message.add_int(packet)
        message.add_string(path)
        message.add_string("")  # reserved
        message.add_int(0)  # reserved
        channel = paramiko.Channel(number)
        transport._channels.put(number, channel)
        transport.channel_events[number] = event = threading.Event()
        transport.channels_seen[number] = True
        channel._set_transport(transport)
        channel._set_window(window, packet)
    transport._send_user_message(message)
    deadline = time.monotonic() + timeout
    while not event.wait(0.05):
        if not transport.is_active():
            raise transport.get_exception() or paramiko.SSHException("the SSH session ended")
        if time.monotonic() > deadline:
            raise paramiko.SSHException(f"no answer to opening {path} in {timeout} s")
    opened = transport._channels.get(number)
    if opened is not None:
        return opened
    # paramiko keeps the server's refusal (a ChannelException with its reason) as the transport's exception.
    refusal = transport.get_exception()
    raise StreamLocalRefused(str(refusal) if refusal is not None else f"the server refused to open {path}")
