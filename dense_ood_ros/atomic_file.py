"""Write files atomically: a temporary file beside the target, fsync, then rename."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode='wb', **kwargs):
    """Open a temporary file that replaces `path` only if the block completes.

    A crash or an exception inside the block leaves `path` as it was and no temporary file.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
    try:
        with os.fdopen(fd, mode, **kwargs) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
