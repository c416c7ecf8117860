"""tensorflow-datasets sources: the only part of the data layer that imports TensorFlow, when it reads one."""

import contextlib
import io
import logging
import re
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request

import numpy as np

from archsearch.data.decode import assemble, resize
from archsearch.errors import DataError

TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[\w.-]+)?(:[\d.*]+)?$")
_LOCAL_COPY_HINT = (
    "pass --data-dir (or set ARCHSEARCH_DATA_DIR) to a local image folder, its .tar.gz, or a .npz with the same classes"
)
# How long a download host may take to resolve and accept a connection before the source counts as offline:
# without a network, tfds itself gives up only after minutes of retries.
CONNECT_TIMEOUT = 5.0


def _import_tfds(data):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataError(
            f"data: source {data.source!r} needs tensorflow-datasets, which cannot be imported ({error}); "
            f"instead, {_LOCAL_COPY_HINT}"
        ) from None
    return tfds


def tfds_builder(data):
    """Returns the tfds builder of `data.source` (metadata only: nothing is downloaded)."""
    tfds = _import_tfds(data)
    try:
        return tfds.builder(data.source, data_dir=data.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"data: source {data.source!r} is neither a file or folder nor a tensorflow-datasets name "
            "(e.g. 'cifar10', 'mnist'); check the spelling or the path"
        ) from None


def unreachable_host(urls, timeout=CONNECT_TIMEOUT):
    """Returns the first host of `urls` that does not resolve or accept a connection within `timeout`, or None.

    The hosts are tried at once, each in a thread of its own: name resolution
    has no timeout of its own, and a thread still waiting on it is left
    behind (a daemon) rather than waited for. Where the environment names a
    proxy for a URL (`HTTPS_PROXY`, ..., unless `NO_PROXY` exempts its host),
    the proxy is tried instead: tfds downloads through it, and a cluster's
    machines often reach the internet only so.

    Args:
        urls: download URLs, e.g. `["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]`.
        timeout: seconds for all of them together.

    Returns:
        `"host (reason)"`, e.g. `"www.cs.toronto.edu (no answer within 5 s)"`, or
        `"proxy host:port (reason)"`, or None when all answer.

    Example:

    >>> unreachable_host(["https://host.invalid/data.tar.gz"], timeout=2)  # doctest: +SKIP
    'host.invalid (Name or service not known)'
    """
    addresses = dict(sorted(_address(url) for url in urls))  # (host, port): how the line names it
    failures = {}

    def connect(address):
        try:
            socket.create_connection(address, timeout=timeout).close()
        except OSError as error:
            failures[address] = error.strerror or str(error) or type(error).__name__
        else:
            failures[address] = None

    threads = [threading.Thread(target=connect, args=(a,), daemon=True) for a in addresses]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for address, name in addresses.items():
        reason = failures.get(address, f"no answer within {timeout:g} s")
        if reason:
            return f"{name} ({reason})"
    return None


def _address(url):
    """The `((host, port), name)` a download of `url` connects to first: its host's, or its proxy's."""
    url = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname):
        # As urllib and requests read it: `proxy:3128` means `http://proxy:3128`.
        proxy = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        address = (proxy.hostname, proxy.port or (443 if proxy.scheme == "https" else 80))
        return address, f"proxy {address[0]}:{address[1]}"
    return (url.hostname, url.port or (80 if url.scheme == "http" else 443)), url.hostname


@contextlib.contextmanager
def _quiet_download(tfds):
    """Silences tfds's own lines while it downloads: its banner (stdout), progress bars and urllib3's retries."""
    retries = logging.getLogger("urllib3")
    level = retries.level
    retries.setLevel(logging.ERROR)
    # tfds has no public getter for its progress bars: its module's flag says whether they were on (a notebook
    # may have turned them off), and where a version lacks it, they were on, tfds's default.
    bars = getattr(sys.modules.get("tensorflow_datasets.core.utils.tqdm_utils"), "_active", True)
    tfds.display_progress_bar(False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(bars)
        retries.setLevel(level)


def read_tfds(data):
    """Returns `(splits, class names)` of a tfds source, downloading it if tfds has not yet.

    A download starts only once its hosts answer, so that a machine without a
    network fails in seconds (tfds itself retries for minutes) and leaves no
    partial download behind.

    Raises:
        DataError: naming the source and what went wrong: its host out of reach, an unknown split, ...
    """
    tfds = _import_tfds(data)
    builder = tfds_builder(data)
    download = not builder.is_prepared()
    if download:
        urls = builder.url_infos or {}  # None: tfds records no URLs for this data set, so none to check
        unreachable = unreachable_host(list(urls))
        if unreachable:
            raise DataError(
                f"data: tensorflow-datasets must download {data.source!r} but cannot reach {unreachable}: "
                f"connect to a network, or {_LOCAL_COPY_HINT}"
            )
        size = f" ({sum(url.size for url in urls.values()) / 2**20:,.0f} MiB)" if urls else ""
        print(
            f"data: downloading {data.source!r}{size} with tensorflow-datasets to {builder.data_dir}, once",
            file=sys.stderr,
        )
    try:
        with _quiet_download(tfds) if download else contextlib.nullcontext():
            datasets, info = tfds.load(
                data.source,
                split=[data.train_split, data.test_split],
                data_dir=data.data_dir,
                as_supervised=True,
                with_info=True,
            )
    except Exception as error:  # tfds fails with many unrelated types: network, checksum, unknown split, import
        reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
        raise DataError(
            f"tensorflow-datasets could not load {data.source!r} (splits {data.train_split!r}, {data.test_split!r}): "
            f"{reason}. Without a network, {_LOCAL_COPY_HINT}; for an unknown split, set train_split / test_split, "
            "e.g. 'train[:80%]' and 'train[80%:]'"
        ) from error
    image, label = tfds_features(info, data)
    fixed = None not in image.shape
    splits = {
        key: _tfds_arrays(tfds, dataset, fixed, data, f"tfds:{data.source}[{split}]")
        for key, split, dataset in zip(("train", "test"), (data.train_split, data.test_split), datasets)
    }
    return splits, list(label.names)


def tfds_features(info, data):
    """Returns the image and class label features of a tfds data set."""
    keys = info.supervised_keys
    if not keys or not hasattr(info.features[keys[1]], "names") or len(info.features[keys[0]].shape) != 3:
        raise DataError(
            f"tensorflow-datasets {data.source!r}: not an image classification data set (supervised keys {keys})"
        )
    return info.features[keys[0]], info.features[keys[1]]


def _tfds_arrays(tfds, dataset, fixed, data, where):
    """Returns `(x, y)` of one tfds split, resized as `data` asks.

    Batched when its images share a size, else one by one.
    """
    size = data.image_size
    if fixed:
        batches = list(tfds.as_numpy(dataset.batch(4096)))  # resized afterwards, with the other array sources
        return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])
    blocks, labels = [], []
    for index, (image, label) in enumerate(tfds.as_numpy(dataset)):
        blocks.append(
            (np.array([index]), resize(image, size, data.crop_to_aspect_ratio)[None] if size else image[None])
        )
        labels.append(label)
    x, _ = assemble(blocks, size, where, warn=size is None, crop=data.crop_to_aspect_ratio)
    return x, np.array(labels)
