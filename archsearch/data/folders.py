"""Image folders `<root>/<split>/<class>/<image>`, on disk or inside a .tar(.gz) / .zip: their layout and listing.

A tree (`Folder` or `Archive`) answers the same few questions, so that one
listing checks both: which folders and files a path holds. Each listed image
is `(label, relative name, identity, job)`, where `job` is what decoding
reads (a path, or the bytes an archive holds) and `identity` what the cache
key uses (a file's size and modification time; nothing inside an archive,
whose hash stands for all of it).
"""

import collections
import hashlib
import os
import tarfile
import warnings
import zipfile
from pathlib import PurePosixPath

from archsearch.data.declaration import check_classes
from archsearch.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _is_image(name):
    return name.lower().endswith(IMAGE_SUFFIXES)


def _hidden(name):
    return name.startswith(".") or name == "__MACOSX"


class Folder:
    """An image folder on disk."""

    def __init__(self, path):
        self.path = path

    def describe(self, parts=()):
        return str(self.path.joinpath(*parts))

    def has_dir(self, parts):
        return self.path.joinpath(*parts).is_dir()

    def subdirs(self, parts):
        with os.scandir(self.path.joinpath(*parts)) as entries:
            return sorted(e.name for e in entries if e.is_dir() and not _hidden(e.name))

    def files(self, parts):
        """Returns sorted `(name, identity, job)`: identity is size and mtime, job the path to decode."""
        with os.scandir(self.path.joinpath(*parts)) as entries:
            files = [e for e in entries if e.is_file() and not _hidden(e.name)]
        return sorted((e.name, f"{e.stat().st_size}:{e.stat().st_mtime_ns}", e.path) for e in files)


class Archive:
    """An image folder inside a .tar(.gz) or .zip, read into memory in one pass."""

    def __init__(self, path):
        self.path = path
        self.dirs = collections.defaultdict(set)
        self.blobs = collections.defaultdict(list)
        try:
            for parts, blob in _zip_members(path) if zipfile.is_zipfile(path) else _tar_members(path):
                self._add(parts, blob)
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
            raise DataError(
                f"{path}: cannot read the archive ({error}); expected a .tar.gz or .zip of an image folder"
            ) from None

    def _add(self, parts, blob):
        """Adds a file (`blob` its bytes) or, with `blob` None, a folder."""
        folders = parts if blob is None else parts[:-1]
        for depth in range(len(folders)):
            self.dirs[folders[:depth]].add(folders[depth])
        if blob is not None:
            self.blobs[parts[:-1]].append((parts[-1], "", blob))

    def describe(self, parts=()):
        return f"{self.path}:{'/'.join(parts)}" if parts else str(self.path)

    def has_dir(self, parts):
        return parts[-1] in self.dirs.get(parts[:-1], ())

    def subdirs(self, parts):
        return sorted(name for name in self.dirs.get(parts, ()) if not _hidden(name))

    def files(self, parts):
        return sorted(entry for entry in self.blobs.get(parts, []) if not _hidden(entry[0]))


def _tar_members(path):
    with tarfile.open(path) as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if member.isdir():
                yield parts, None
            elif member.isfile() and parts:
                yield parts, tar.extractfile(member).read() if _is_image(parts[-1]) else b""


def _zip_members(path):
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            parts = PurePosixPath(info.filename).parts
            if info.is_dir():
                yield parts, None
            elif parts:
                yield parts, archive.read(info) if _is_image(parts[-1]) else b""


def _find_root(tree, split):
    """Returns the path parts of `<root>`, the folder holding `<root>/<split>/`: the top or one level down."""
    if tree.has_dir((split,)):
        return ()
    inner = [name for name in tree.subdirs(()) if tree.has_dir((name, split))]
    if len(inner) == 1:
        return (inner[0],)
    if inner:
        raise DataError(f"{tree.describe()}: holds several data sets ({', '.join(inner)}); point at one of them")
    found = tree.subdirs(())
    raise DataError(
        f"{tree.describe()}: no '{split}' folder; expected <root>/{split}/<class>/<image> "
        f"(found folders: {', '.join(found[:12]) or 'none'}{', ...' if len(found) > 12 else ''})"
    )


def _list_split(tree, root, split, classes):
    """Lists one split folder.

    Returns:
        `(available class names, {class: [(name, identity, job)]}, ignored non-image files)`.
    """
    where = (*root, split)
    if not tree.has_dir(where):
        raise DataError(f"{tree.describe(root)}: no '{split}' folder; expected {tree.describe(where)}/<class>/<image>")
    available = tree.subdirs(where)
    if not available:
        raise DataError(f"{tree.describe(where)}: no class folders; expected {tree.describe(where)}/<class>/<image>")
    check_classes(classes or available, available, tree.describe(where))
    listing, ignored = {}, []
    for name in classes or available:
        entries = tree.files((*where, name))
        listing[name] = [entry for entry in entries if _is_image(entry[0])]
        ignored += [tree.describe((*where, name, entry[0])) for entry in entries if not _is_image(entry[0])]
        if not listing[name]:
            raise DataError(
                f"{tree.describe((*where, name))}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
    return available, listing, ignored


def tree_listing(tree, data):
    """Checks a folder's layout and lists the images the options select.

    Returns:
        `(class names, {"train": entries, "test": entries}, split folder descriptions)`,
        each entry `(label, relative name, identity, job)`.
    """
    root = _find_root(tree, data.train_split)
    train_available, train, ignored = _list_split(tree, root, data.train_split, data.classes)
    test_available, test, test_ignored = _list_split(tree, root, data.test_split, data.classes)
    if not data.classes and train_available != test_available:
        only_train = sorted(set(train_available) - set(test_available))
        only_test = sorted(set(test_available) - set(train_available))
        raise DataError(
            f"{tree.describe(root)}: class folders differ between {data.train_split} and {data.test_split}: "
            f"only in {data.train_split}: {only_train or 'none'}; only in {data.test_split}: {only_test or 'none'}"
        )
    skipped = ignored + test_ignored
    if skipped:
        warnings.warn(
            f"{tree.describe(root)}: ignored {len(skipped)} file(s) that are not images, e.g. {skipped[0]}",
            stacklevel=3,
        )
    entries = {"train": _entries(train, data.per_class), "test": _entries(test, data.test_per_class)}
    wheres = {"train": tree.describe((*root, data.train_split)), "test": tree.describe((*root, data.test_split))}
    return list(train), entries, wheres


def _entries(listing, cap):
    return [
        (label, f"{name}/{file}", identity, job)
        for label, (name, files) in enumerate(listing.items())
        for file, identity, job in files[:cap]
    ]


def listing_identity(entries):
    """A digest of a listing's names and identities: a folder's identity for the cache."""
    digest = hashlib.sha256()
    for split, split_entries in entries.items():
        for _, name, identity, _ in split_entries:
            digest.update(f"{split}/{name}:{identity}\n".encode())
    return digest.hexdigest()
