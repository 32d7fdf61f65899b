"""Exceptions that reach the CLI boundary unconverted still come out as one line in the domain's words."""
import sqlite3

from hwnas.cli import describe


def test_file_errors_name_the_file():
    assert describe(PermissionError(13, "Permission denied", "/root/out")) == "/root/out: Permission denied"
    assert describe(NotADirectoryError(20, "Not a directory", "a/file/x")) == "a/file/x: Not a directory"


def test_memory_database_and_encoding_errors_say_what_to_do():
    assert describe(MemoryError()).startswith("out of memory: the request needs more memory")
    msg = describe(sqlite3.DatabaseError("database disk image is malformed"))
    assert "database is damaged" in msg and "hwnas lut build" in msg and "malformed" in msg
    assert describe(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")).startswith(
        "a file that should be text is not (invalid start byte at byte 0)")


def test_anything_else_keeps_its_type_and_points_at_debug():
    assert describe(ValueError("x")) == "ValueError: x (rerun with --debug for the traceback)"


def test_an_output_file_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    from tests.cli_helpers import assert_one_line_error, hwnas
    (tmp_path / "file").write_text("x")
    r = hwnas("lut", "validate", "--space", "mnasnet-tiny", "--db", str(tmp_path / "t.db"),
              "--json", str(tmp_path / "missing" / "report.json"))
    assert_one_line_error(r, "does not exist", only_line=True)
    assert not (tmp_path / "t.db").exists()  # refused before the database was even opened
    r = hwnas("profile", "--model", "mobilenet_v2", "--json", str(tmp_path))
    assert_one_line_error(r, "is a folder; give a file name", only_line=True)
    r = hwnas("adapt", "mobilenet_v2", "--budget", "1ms", "--out", str(tmp_path / "file" / "run"))
    assert_one_line_error(r, "a parent of it is a file", only_line=True)
