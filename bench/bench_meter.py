"""One poll of the SDM630 register set over a pseudo-terminal, beside the wire time it would take.

The charge point's own Modbus path (`hilsim.meter.modbus.ModbusLink`, i.e. pymodbus's async RTU
client on pyserial) reads every register of `SDM630` (two requests) from pymodbus's RTU server
(`MeterSimulator`) at the other end of a `VirtualCable` (two `os.openpty()` pseudo-terminals whose
masters are bridged on the same event loop; Python alone), both ends set to 9600 and 19200 baud
8N1.

A pseudo-terminal accepts the baud rate (termios stores it) but does not pace bytes at it, so
what is measured is the time software spends on a poll: framing, CRC, decoding, the event loop,
the kernel's ptys and the cable's copying between them, and (in this same process and loop) the
simulated meter answering. The baseline is the physical minimum a real RS-485 line needs for the
same bytes: request and response frames of both requests, 10 bits a byte at 8N1, without the
3.5-character silences or the meter's turnaround. The ratio is how much of a real poll software
adds: at 0.1x a real poll takes at most 1.1x its wire time.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time

from hilsim.meter.config import MeterSettings
from hilsim.meter.modbus import ModbusLink
from hilsim.meter.registers import SDM630
from hilsim.meter.simulator import MeterSimulator, VirtualCable

from bench.common import Row

BAUDRATES = (9600, 19200)
BITS_PER_BYTE = 10  # start, 8 data, stop (8N1)
GOAL = 0.1  # software may add at most a tenth of the wire time


def wire_bytes() -> int:
    """Bytes on the line for one poll: every request frame and its normal response frame."""
    return sum(b.request_bytes + b.response_bytes for b in SDM630.blocks)


def physical_ms(baudrate: int) -> float:
    return wire_bytes() * BITS_PER_BYTE / baudrate * 1000.0


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _polls(baudrate: int, count: int, warmup: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="hs-bench-", dir="/tmp") as directory:
        async with VirtualCable(directory) as cable:
            simulator = MeterSimulator(cable.meter_port, SDM630, baudrate=baudrate)
            simulator.set_energy(12_500.0)
            simulator.load(11_040.0)
            async with simulator:
                settings = MeterSettings(
                    "sdm630", cable.charger_port, SDM630, baudrate=baudrate, timeout_s=2.0
                )
                link = ModbusLink(settings)
                link.acquire()
                try:
                    for _ in range(warmup):
                        await link.read(1, SDM630)
                    samples = []
                    for _ in range(count):
                        started = time.perf_counter()
                        values = await link.read(1, SDM630)
                        samples.append((time.perf_counter() - started) * 1000.0)
                        assert values["power_W"] == 11_040.0
                finally:
                    link.release()
    return samples


def run(quick: bool = False) -> list[Row]:
    count, warmup = (30, 5) if quick else (500, 20)
    rows: list[Row] = []
    for baudrate in BAUDRATES:
        samples = asyncio.run(_polls(baudrate, count, warmup))
        floor = physical_ms(baudrate)
        name = f"wire time of its {wire_bytes()} bytes at {baudrate} baud 8N1"
        for label, value in (
            ("p50", statistics.median(samples)),
            ("p99", percentile(samples, 0.99)),
        ):
            rows.append(
                Row(
                    figure=f"SDM630 poll ({len(SDM630.blocks)} requests) over a pty at "
                    f"{baudrate} baud, {label}",
                    value=round(value, 3),
                    unit="ms",
                    baseline=round(floor, 3),
                    baseline_name=name,
                    goal=f"≤ {GOAL:g}x",
                    met=value / floor <= GOAL,
                )
            )
    return rows


if __name__ == "__main__":
    for row in run():
        ratio = f"{row.ratio:.4f}x" if row.ratio is not None else "-"
        print(f"{row.figure}: {row.value:.3f} {row.unit} vs {row.baseline} ms ({ratio})")
