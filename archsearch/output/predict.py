"""`archsearch predict`: classifies image files with an exported model, not the training code.

It reads what an export wrote (`model.keras` and `model.json`), decodes each
file with Pillow into the model's input contract (RGB or gray uint8, any
size: the model resizes), and predicts in batches of images of one size.
"""

import contextlib
import csv
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from archsearch.data.decode import UNREADABLE_ERRORS
from archsearch.data.folders import ARCHIVE_SUFFIXES, IMAGE_SUFFIXES
from archsearch.errors import ArchsearchError
from archsearch.output.export import MODEL_JSON, MODEL_KERAS
from archsearch.records.directory import RunDir


def export_folder(run_dir):
    """Returns the folder holding an export: `run_dir` itself, or its `best/`.

    Args:
        run_dir: a run directory, or a folder `archsearch export --out` wrote.

    Raises:
        ArchsearchError: if neither holds `model.keras` and `model.json`.
    """
    for folder in (Path(run_dir), RunDir(run_dir).best):
        if (folder / MODEL_KERAS).is_file() and (folder / MODEL_JSON).is_file():
            return folder
    raise ArchsearchError(
        f"{run_dir}: no exported model (model.keras and {MODEL_JSON}, here or in best/); "
        f"run `archsearch export {run_dir} --out DIR` to write one"
    )


def list_images(paths):
    """Lists the images to classify: files as given, folders' image files (recursively), archives' image members.

    Args:
        paths: image files, folders, or `.tar.gz` / `.zip` archives.

    Returns:
        `[(name, job)]` in order: `job` is a file path, or the member's bytes.

    Raises:
        ArchsearchError: for a path that does not exist.
    """
    images = []
    for path in map(Path, paths):
        if not path.exists():
            raise ArchsearchError(f"{path}: no such file or folder")
        if path.is_dir():
            images += [
                (str(file), str(file)) for file in sorted(path.rglob("*")) if _listed(file.relative_to(path).parts)
            ]
        elif path.name.lower().endswith(ARCHIVE_SUFFIXES):
            images += [(f"{path}:{name}", blob) for name, blob in _archive_images(path)]
        else:
            images.append((str(path), str(path)))
    return images


def _listed(parts):
    return parts[-1].lower().endswith(IMAGE_SUFFIXES) and not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _archive_images(path):
    """Yields `(member name, bytes)` of an archive's image files."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir() and _listed(Path(info.filename).parts):
                        yield info.filename, archive.read(info)
        else:
            with tarfile.open(path) as archive:
                for member in archive:
                    if member.isfile() and _listed(Path(member.name).parts):
                        yield member.name, archive.extractfile(member).read()
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
        raise ArchsearchError(f"{path}: cannot read the archive ({error})") from None


def predict(run_dir, paths, out=None, *, batch_size=256, log=None):
    """Classifies image files with the exported model of a run and writes a CSV.

    The CSV has one row per readable image: `path`, `class_name`,
    `class_id`, then `probability_<class>` for every class. An unreadable
    file is reported through `log` by name and left out; the others are
    still classified.

    Args:
        run_dir: a run directory, or an export folder.
        paths: image files, folders or archives of images.
        out: the CSV file to write (default: standard output).
        batch_size: images decoded and predicted at a time.
        log: where messages and progress go (default: standard error).

    Returns:
        `(classified, unreadable)`: how many images were classified, and the
        names of those that could not be read.

    Example:

    ```python
    predict("results/digits", ["my_digits/"], "predictions.csv")
    ```
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    folder = export_folder(run_dir)
    contract = json.loads((folder / MODEL_JSON).read_text())
    names, mode = contract["class_names"], "RGB" if contract["input"]["channels"] == 3 else "L"
    images = list_images(paths)
    if not images:
        raise ArchsearchError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, paths))}")
    model = keras.saving.load_model(folder / MODEL_KERAS)
    unreadable, classified = [], 0
    with open(out, "w", newline="") if out else contextlib.nullcontext(sys.stdout) as file:
        writer = csv.writer(file)
        writer.writerow(["path", "class_name", "class_id", *(f"probability_{name}" for name in names)])
        for start in range(0, len(images), batch_size):
            rows, failed = _classify(model, images[start : start + batch_size], mode, names)
            writer.writerows(rows)
            classified += len(rows)
            for name, reason in failed:
                log(f"archsearch predict: skipped {name}: cannot read it as an image ({reason})")
            unreadable += [name for name, _ in failed]
            done = min(start + batch_size, len(images))
            if len(images) > batch_size and done * 10 // len(images) > start * 10 // len(images):  # every tenth
                log(f"archsearch predict: {done:,}/{len(images):,} images")
    return classified, unreadable


def _classify(model, batch, mode, names):
    """Decodes and classifies one batch; returns (CSV rows in input order, [(name, reason)] unreadable)."""
    decoded, failed = {}, []
    for index, (name, job) in enumerate(batch):
        try:
            with Image.open(job if isinstance(job, str) else io.BytesIO(job)) as image:
                decoded[index] = np.asarray(image.convert(mode)).reshape(image.height, image.width, len(mode))
        except UNREADABLE_ERRORS as error:
            failed.append((name, f"{type(error).__name__}: {error}"))
    probabilities = {}
    for shape in {array.shape for array in decoded.values()}:  # one call per image size
        indices = [i for i, array in decoded.items() if array.shape == shape]
        for index, row in zip(indices, model.predict_on_batch(np.stack([decoded[i] for i in indices]))):
            probabilities[index] = row
    rows = []
    for index in sorted(probabilities):
        row = probabilities[index]
        class_id = int(np.argmax(row))
        rows.append([batch[index][0], names[class_id], class_id, *(f"{p:.6g}" for p in row)])
    return rows, failed
