"""Turning `pan infer`'s arguments into jobs: files, folders (searched recursively, never
into output folders) and paths on stdin, each with its output path and, for inpainting, its
mask."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence

from pan_cli.datasets.images import frame_count, list_images
from pan_cli.datasets.layout import images_by_name
from pan_cli.errors import PanError
from pan_cli.files import OUTPUT_MARK


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path
    mask: Path | None = None  # inpainting: white = fill



def check_output_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise PanError(f"-o {out_dir} is a file; give a folder for the outputs")


def mark_output(out_dir: Path) -> None:
    """Mark a folder outputs were written to (called once the first one lands: a run that
    writes nothing leaves no folder behind)."""
    (out_dir / OUTPUT_MARK).touch()


def _output_skipper(out_dir: Path, on_skipped: Callable[[str], None]) -> Callable[[Path], bool]:
    """For a folder search: whether a folder below the input folder holds outputs, not inputs
    (this run's output folder, or one an earlier `pan infer` marked with OUTPUT_MARK); the
    search does not enter it. An output folder given itself as the input is searched: that was
    asked for."""
    out = out_dir.resolve()

    def skip(folder: Path) -> bool:
        if folder.resolve() == out or (folder / OUTPUT_MARK).exists():
            on_skipped(f"skipping {folder}/: a pan output folder, never an input")
            return True
        return False

    return skip

def stdin_paths(stream: IO[bytes], null: bool) -> Iterator[str]:
    """Paths read from stdin: NUL-separated (`find -print0`), or one per line with only the line
    end cut, so a name may start or end with spaces."""
    if null:
        pending = b""
        while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
            *names, pending = (pending + chunk).split(b"\0")
            yield from map(os.fsdecode, names)
        if pending:
            yield os.fsdecode(pending)
        return
    for line in stream:
        yield os.fsdecode(line.rstrip(b"\n").rstrip(b"\r"))


def iter_jobs(inputs: Sequence[str], out_dir: Path, fmt: str, stdin: Iterable[str] = (),
              masks: Path | None = None, on_skipped: Callable[[str], None] = lambda message: None) -> Iterator[Job]:
    """Expand files, folders (recursively) and '-' (paths on stdin) into jobs, keeping each
    folder's relative paths under out_dir, one at a time: paths on stdin are taken as they come
    (a million paths, or `yes x.png`, start at once). Refuses name collisions and writing over an
    input; a folder search never takes this run's or an earlier run's output folder as input.
    `masks` (inpainting) is one mask file for every input, or a folder with a mask of the same
    relative name (or, failing that, the same stem) for each input."""
    find_mask = _mask_finder(masks)
    named = {item: list(_named_sources(Path(item), out_dir, on_skipped)) for item in inputs if item != "-"}
    inputs_resolved = {hash(source.resolve()) for found in named.values() for source, _ in found}
    seen: dict[int, str] = {}  # hash of an output path -> its source (hashes: stdin may bring millions)
    count = 0
    for item in inputs:
        for source, relative in named[item] if item != "-" else _stdin_sources(stdin):
            if (pages := frame_count(source)) > 1:
                on_skipped(f"{source}: {pages} pages or frames; only the first is read")
            output = out_dir / relative.with_suffix(f".{fmt}")
            key = hash(output.resolve())
            if key in seen:
                raise PanError(f"{source} and {seen[key]} would both be written to {output}")
            if key in inputs_resolved or output.resolve() == source.resolve():
                raise PanError(f"output {output} would overwrite an input; choose another -o folder")
            seen[key] = str(source)
            count += 1
            yield Job(source, output, find_mask(source, relative))
    if not count:
        raise PanError("no inputs: give image files, folders, or - to read paths from stdin")


def _stdin_sources(stdin: Iterable[str]) -> Iterator[tuple[Path, Path]]:
    """(source, its relative output path) for each path on stdin, as it comes."""
    for line in stdin:  # one path each, already split (see stdin_paths)
        if line:
            path = Path(line)
            keep = not path.is_absolute() and ".." not in path.parts
            yield path, path if keep else Path(path.name)


def _named_sources(path: Path, out_dir: Path, on_skipped: Callable[[str], None]) -> Iterator[tuple[Path, Path]]:
    """(source, its relative output path) for a file or a folder named on the command line."""
    if path.is_dir():
        found = list_images(path, on_skipped, skip_dir=_output_skipper(out_dir, on_skipped))
        if not found:
            raise PanError(f"no images in folder {path}")
        yield from ((p, p.relative_to(path)) for p in found)
    elif path.exists():
        yield path, Path(path.name)
    else:
        raise PanError(f"input {path} does not exist")


def _mask_finder(masks: Path | None) -> Callable[[Path, Path], Path | None]:
    """(source, relative output path) -> its mask file: `masks` itself when it is one file,
    else the mask in the folder with the same relative name, or failing that the same stem.
    The folder is listed once, however many inputs there are."""
    if masks is None or masks.is_file():
        return lambda source, relative: masks
    if not masks.is_dir():
        raise PanError(f"--mask {masks} does not exist")
    by_name = images_by_name(masks)
    by_stem = {Path(name).name: path for name, path in by_name.items()}

    def find(source: Path, relative: Path) -> Path:
        name = relative.with_suffix("").as_posix()
        found = by_name.get(name) or by_stem.get(source.stem)
        if found is None:
            raise PanError(f"no mask for {source} in {masks}/ (expected {name}.png or {source.stem}.png)")
        return found

    return find
