"""Ray's node messages on the driver's console: one plain line each, the whole text in ray_messages.log."""

from __future__ import annotations

import io
import sys
import threading

import pytest

from study.console import RayConsole, one_line, ray_console, ray_messages_path, strip_ansi

YELLOW, RESET = "\x1b[33m", "\x1b[0m"
RAYLET_DIED = (
    f"{YELLOW}(raylet){RESET} Raylet is terminated. Termination is unexpected. Possible reasons include: "
    "(1) SIGKILL by the user or system OOM killer, (2) Invalid memory access from Raylet causing SIGSEGV or "
    "SIGBUS, (3) Other termination signals. Last 20 lines of the Raylet logs:\n"
    "    [2026-12-04 10:00:00,000 I 123 123] (raylet) main.cc:1: Setting cluster ID to: abc\n"
    "    [2026-12-04 10:00:01,000 I 123 123] (raylet) node_manager.cc:2: Registered worker\n"
)


class Console(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_a_raylet_block_becomes_one_plain_line_and_is_kept_whole(tmp_path):
    sink = Console(tty=False)
    log = tmp_path / "study" / "ray_messages.log"
    console = RayConsole(sink, log)
    console.write("study progress after 1m00s\n")
    print(RAYLET_DIED, file=console)  # as Ray prints it: one print of the multi-line message
    console.write("qm9/ew  12  0\n")
    lines = sink.getvalue().splitlines()
    assert lines[0] == "study progress after 1m00s"
    assert lines[1] == (
        f"ray: (raylet) Raylet is terminated. Termination is unexpected. (Ray's whole message: {log})"
    )
    assert lines[2:] == ["qm9/ew  12  0"]
    assert "\x1b" not in sink.getvalue()
    kept = log.read_text()
    assert "Possible reasons include" in kept and "Registered worker" in kept and "\x1b" not in kept
    assert console.condensed == 1


def test_a_terminal_keeps_the_progress_tables_codes_and_a_pipe_gets_none():
    redraw = "\x1b[3F\x1b[J"  # the progress table's redraw on a terminal
    tty, pipe = Console(tty=True), Console(tty=False)
    for sink in (tty, pipe):
        RayConsole(sink, ray_messages_path("/nowhere", "s")).write(f"{redraw}{YELLOW}table{RESET}\n")
    assert tty.getvalue() == f"{redraw}{YELLOW}table{RESET}\n"
    assert pipe.getvalue() == "table\n"
    assert RayConsole(tty, ray_messages_path("/x", "s")).isatty()
    assert not RayConsole(pipe, ray_messages_path("/x", "s")).isatty()


def test_lines_split_over_writes_and_threads_stay_whole(tmp_path):
    sink = Console(tty=False)
    console = RayConsole(sink, tmp_path / "m.log")
    console.write("par")
    console.write("tial\nsecond")
    assert sink.getvalue() == "partial\n"
    console.flush_pending()
    assert sink.getvalue() == "partial\nsecond"

    sink = Console(tty=False)
    console = RayConsole(sink, tmp_path / "m.log")

    def writer(tag: str) -> None:
        for i in range(300):
            console.write(f"{tag}-{i}")
            console.write("\n")

    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = sink.getvalue().splitlines()
    assert sorted(lines) == sorted([f"{t}-{i}" for t in "ab" for i in range(300)])


def test_ray_console_routes_and_restores_the_standard_streams(tmp_path, capsys):
    before = sys.stdout, sys.stderr
    with ray_console(tmp_path / "ray_messages.log") as (out, err):
        assert sys.stdout is out and sys.stderr is err
        print(RAYLET_DIED)
        print("plain line")
    assert (sys.stdout, sys.stderr) == before
    got = capsys.readouterr().out
    assert got.count("\n") == 2 and got.startswith("ray: (raylet) Raylet is terminated.")
    assert got.endswith("plain line\n")


def test_the_message_as_rays_own_printer_formats_it(tmp_path):
    """The driver thread's printer (Ray 2.x) fed the message a node publishes: still one line. Guards the
    format against a Ray upgrade."""
    worker = pytest.importorskip("ray._private.worker")
    sink = Console(tty=False)
    console = RayConsole(sink, tmp_path / "m.log")
    plain_message = strip_ansi(RAYLET_DIED).removeprefix("(raylet) ")
    worker.print_worker_logs({"lines": [plain_message], "pid": "raylet", "is_err": False}, console)
    console.flush_pending()
    line = "ray: (raylet) Raylet is terminated. Termination is unexpected."
    assert sink.getvalue().splitlines() == [f"{line} (Ray's whole message: {tmp_path / 'm.log'})"]


def test_one_line_is_short():
    assert one_line("(raylet) " + "x" * 500).endswith("…") and len(one_line("(raylet) " + "x" * 500)) == 160
    assert ray_messages_path("s3://bucket/p/s", "s").name == "ray_messages.log"
