"""How free_train writes files: whole or not at all, and never over what the run reads.

A file goes to a temporary name beside it (".NAME.PID.tmp", as the CLI's cli/src/output.rs
names it), is flushed to disk and renamed over the old one: a failed, interrupted or killed
run leaves the old file as it was, and a symlink at the path is replaced, not written through.
A folder is built as DIR.tmp; `replacing_dir` then swaps it in for the old DIR whole (a
checkpoint, a trunk) and `replacing_files` renames its files over their namesakes in DIR one
by one, leaving the folder's other files alone (a model card beside an exported model). The
folder's temporary name is fixed, not per process, so the next save clears what a killed one
left (the trainer's resume looks for checkpoint.tmp and checkpoint.old by these names).

`refuse_overwriting_inputs` runs before a run writes anything: an output may not be one of the
run's inputs, hold one or lie inside one, after symlinks.
"""
from __future__ import annotations

import contextlib
import os
import shutil


@contextlib.contextmanager
def replacing(path: str):
    """A binary file to write that takes path's place when the block ends without an error."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            # Before the rename: a crash just after it must not leave an empty file in place.
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            shutil.copymode(path, tmp)  # the old file's permissions, as writing into it kept them
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_bytes(path: str, data: bytes) -> None:
    with replacing(path) as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_dir(out_dir: str):
    """An empty folder out_dir.tmp beside out_dir, removed when the block ends."""
    tmp = os.path.abspath(out_dir) + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def created_mode(folder: str) -> None:
    """Gives the folder's files the permissions open() would (0666 less the umask): savers
    that write through a temporary file of their own (transformers' save_pretrained) leave
    0600, which a web server reading the folder as another user could not serve."""
    mask = os.umask(0)
    os.umask(mask)
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def replacing_dir(out_dir: str):
    """A folder to fill that takes out_dir's place when the block ends without an error: two
    renames, so a stop leaves a whole folder (out_dir, or out_dir.old beside out_dir.tmp)."""
    with staged_dir(out_dir) as tmp:
        yield tmp
        created_mode(tmp)
        old = os.path.abspath(out_dir) + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(out_dir):
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def replacing_files(out_dir: str):
    """A folder to fill whose files, when the block ends without an error, each replace their
    namesake in out_dir (one rename each); out_dir's other files stay."""
    with staged_dir(out_dir) as tmp:
        yield tmp
        created_mode(tmp)
        os.makedirs(out_dir, exist_ok=True)
        for name in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))


def within(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def refuse_overwriting_inputs(outputs, inputs) -> None:
    """SystemExit naming both paths when an output is an input, holds one (a folder written
    into or replaced whole) or lies inside one (a file written into an input folder). outputs
    and inputs are (option, path) pairs; a path of None (an option not given) is skipped."""
    for out_name, out in outputs:
        for in_name, inp in inputs:
            if out is None or inp is None:
                continue
            o, i = os.path.realpath(out), os.path.realpath(inp)
            how = "is" if o == i else "holds" if within(i, o) else "is inside" if within(o, i) else None
            if how:
                via = "" if (o, i) == (os.path.abspath(out), os.path.abspath(inp)) else " (after symlinks)"
                raise SystemExit(f"{out_name} {out} {how} {in_name} {inp}{via}, which this run reads: "
                                 f"writing there would overwrite it; give another {out_name}")
