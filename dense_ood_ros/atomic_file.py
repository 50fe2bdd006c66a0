"""Write files atomically: a temporary file beside the target, fsync, then rename.

Directories (a rosbag2, a dataset split) are finished beside the target and swapped in with
replace_dir.
"""

import contextlib
import json
import os
import pathlib
import shutil
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


def write_json(path, payload):
    """Write ``payload`` as indented JSON with a final newline, atomically."""
    with atomic_open(path, 'w', encoding='utf-8') as stream:
        json.dump(payload, stream, indent=2)
        stream.write('\n')


def replace_dir(new, target):
    """Rename the finished directory `new` over `target`, removing any old `target` after.

    The old directory is first renamed aside (a directory cannot be replaced by rename while
    it holds files), so `target` is never a half-written mixture of old and new.
    """
    new, target = pathlib.Path(new), pathlib.Path(target)
    old = None
    if target.exists():
        old = pathlib.Path(tempfile.mkdtemp(prefix=f'.{target.name}.old.', dir=target.parent))
        os.replace(target, old)  # onto the empty placeholder directory
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old)
