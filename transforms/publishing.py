"""Publishing a stage's output atomically: one run per target, a private staging folder, a swap.

Every stage that writes a folder a later stage reads (preprocess ``DATA/``, train's export in
``MODEL_DIR``, infer's ``OUTPUT/`` or ``OUTPUT/run_id=R/``, evaluate's ``REPORT/``) goes through a
:class:`Publication` of its target ``PARENT/NAME``:

- **Lock.** The run takes an exclusive ``fcntl.flock`` on ``PARENT/.NAME.lock`` (which holds the
  holder's pid, host, start time and run id) for its whole life. A second run on the same target
  fails at once with :class:`TargetBusy` (exit code 75), naming the run that holds it. The kernel
  drops the lock when its process dies, however it dies, so a crashed run never blocks the next one.
  The run deletes the lock file when it ends (a killed run's stays, unlocked, until the next run);
  a run that opened the file just before it was deleted sees that and locks the new one. Object stores
  (``gs://``, ``s3://``) have no locks: there the run goes on unlocked, as the scheduler should
  serialise runs on one target.
- **Sweep.** Holding the lock, the run deletes what crashed runs of this target left:
  ``.NAME.staging-*`` folders and ``.NAME.old-*`` copies (restored instead when ``NAME`` itself is
  missing, i.e. a run died between moving the old output aside and moving the new one in), and
  Beam's ``beam-temp-*`` folders inside the target. No live run holds these: it would hold the lock.
- **Stage.** The run writes into ``PARENT/.NAME.staging-RUN`` (RUN: UTC time, pid and a random
  suffix), hidden from readers that skip dot-names and never shared with another run.
- **Publish.** On success, :func:`replace` moves each old entry aside (``.ENTRY.old-RUN``), moves
  each new one in and only then deletes the old ones; when any step fails it moves the new ones
  back and the old ones back in place, so readers see the previous output or the new one, never a
  mix and never nothing. On a local disk each step is one atomic ``rename``. A train run publishes
  entries (``saved_model/``, ``training.json``, ``config.json``) into ``MODEL_DIR`` and leaves the
  rest (checkpoints, logs) where it is; the other stages replace the whole folder.
- **Fail.** A run that fails or is interrupted deletes its staging folder (or keeps it, renamed
  ``.NAME.failed``, when the error points the user into it) and the target stays as it was.

It lives in ``transforms``, the bottom of the one-way imports, because ``models`` (the export)
and ``pipelines`` (the Beam jobs) both publish and ``models`` cannot import ``pipelines``. It also
refuses outputs that overlap inputs (:func:`check_apart`).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import posixpath
import re
import socket
import uuid

import tensorflow as tf

from transforms.errors import UserError

log = logging.getLogger(__name__)

BEAM_TEMP_PREFIX = "beam-temp-"
_GLOB = re.compile(r"[*?\[]")


class TargetBusy(UserError):
    """Another live run is writing the same target; try again when it has finished."""

    exit_code = 75  # EX_TEMPFAIL: a scheduler may retry later


def new_run_id() -> str:
    """A name unique to this run: UTC time, pid and a random suffix."""
    now = datetime.datetime.now(datetime.UTC)
    return f"{now:%Y%m%dT%H%M%S}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _split(path: str) -> tuple[str, str]:
    parent, name = posixpath.split(path.rstrip("/"))
    return parent or ".", name


def _is_local(path: str) -> bool:
    return "://" not in path


class Publication:
    """One run's hold on ``target`` (see the module docstring). Use it as a context manager.

    Args:
      target: the folder the run publishes.
      entries: publish only these names into ``target`` (created if needed) and leave its other
        content; ``None``: replace the whole folder.
      marker: a name every earlier output of this stage holds; a non-empty ``target`` without it is
        refused (it is not this stage's output, and replacing it would delete someone's files).
      stage: the command's name, for messages.

    Raises (on entering):
      TargetBusy: another live run holds ``target``.
      UserError: ``target`` exists, is not empty and lacks ``marker``.
    """

    def __init__(self, target: str, entries: tuple[str, ...] | None = None, marker: str | None = None, stage=""):
        self.target = target.rstrip("/")
        self.entries = entries
        self.marker = marker
        self.stage = stage or "hourglass"
        self.run_id = new_run_id()
        parent, name = _split(self.target)
        self.staging = posixpath.join(parent, f".{name}.staging-{self.run_id}")
        self.failed = posixpath.join(parent, f".{name}.failed")
        self._lock_fd: int | None = None
        self._lock_path = ""
        self._done = False

    def __enter__(self) -> Publication:
        parent, name = _split(self.target)
        tf.io.gfile.makedirs(parent)
        self._lock()
        try:
            sweep(parent, name, self.target if self.entries else None)
            self._check_replaceable()
            tf.io.gfile.makedirs(self.staging)
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if not self._done and tf.io.gfile.exists(self.staging):
                tf.io.gfile.rmtree(self.staging)
        finally:
            self._unlock()

    def publish(self) -> None:
        """Moves the staged output into place (all of it, or the staged ``entries``)."""
        if self.entries is None:
            pairs = [(self.staging, self.target)]
        else:
            tf.io.gfile.makedirs(self.target)
            staged = set(tf.io.gfile.listdir(self.staging))
            pairs = [
                (posixpath.join(self.staging, e), posixpath.join(self.target, e)) for e in self.entries if e in staged
            ]
        replace(pairs, self.run_id)
        if self.entries is not None:
            tf.io.gfile.rmtree(self.staging)
        if tf.io.gfile.exists(self.failed):
            tf.io.gfile.rmtree(self.failed)
        self._done = True

    def keep_failed(self) -> str:
        """Keeps this failed run's staging folder as ``.NAME.failed`` (replacing an earlier one), for
        the user to look into; returns its path. The target stays as it was."""
        if tf.io.gfile.exists(self.failed):
            tf.io.gfile.rmtree(self.failed)
        tf.io.gfile.rename(self.staging, self.failed)
        self._done = True
        return self.failed

    def _check_replaceable(self) -> None:
        if self.marker is None or self.entries is not None:
            return
        listed = tf.io.gfile.isdir(self.target) and _visible(tf.io.gfile.listdir(self.target))
        if listed and not tf.io.gfile.exists(posixpath.join(self.target, self.marker)):
            raise UserError(
                f"output {self.target} exists and is not {_article(self.stage)} {self.stage} output "
                f"(it holds no {self.marker}); "
                f"a {self.stage} run replaces its whole output folder: pass a new or empty folder, "
                f"or an earlier {self.stage} output to replace"
            )

    def _lock(self) -> None:
        if not _is_local(self.target):
            log.info("%s is on an object store: no lock taken; do not run two jobs on it at once", self.target)
            return
        parent, name = _split(self.target)
        path = os.path.join(parent, f".{name}.lock")
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
                os.close(fd)
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise TargetBusy(
                    f"{self.target} is being written by another run ({_describe(holder)}; lock file {path}); "
                    "wait for it to finish and run again, or pass another output"
                ) from None
            try:  # the holder before us may have deleted the file we opened: lock the one on disk
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "run": self.run_id,
            "stage": self.stage,
        }
        os.write(fd, json.dumps(holder).encode())
        self._lock_fd, self._lock_path = fd, path

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.unlink(self._lock_path)  # still holding it: a run that opened it meanwhile retries (above)
            os.close(self._lock_fd)  # closing the last descriptor releases the flock
            self._lock_fd = None


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _describe(holder: str) -> str:
    try:
        h = json.loads(holder)
        return f"hourglass {h['stage']} run {h['run']}, pid {h['pid']} on {h['host']}, started {h['started']}"
    except (ValueError, KeyError, TypeError):
        return "a run that is just starting"


def _visible(names: list[str]) -> list[str]:
    return [n for n in names if not n.startswith(".")]


def sweep(parent: str, name: str, entries_of: str | None = None) -> None:
    """Deletes the leftovers of crashed runs of ``parent/name`` (call it holding the lock).

    With ``entries_of`` (a train run's model folder), also the ``.ENTRY.old-*`` copies inside it.
    """
    folders = [(parent, name)]
    if entries_of is not None and tf.io.gfile.isdir(entries_of):
        folders += [(entries_of, n.split(".old-")[0][1:]) for n in tf.io.gfile.listdir(entries_of) if ".old-" in n]
    for folder, entry in folders:
        if not tf.io.gfile.isdir(folder):
            continue
        for leftover in sorted(tf.io.gfile.listdir(folder)):
            leftover = leftover.rstrip("/")
            path = posixpath.join(folder, leftover)
            target = posixpath.join(folder, entry)
            if leftover.startswith(f".{entry}.old-") and not tf.io.gfile.exists(target):
                log.warning("restoring %s from %s, left by a run that died while publishing", target, path)
                tf.io.gfile.rename(path, target)
            elif leftover.startswith((f".{entry}.old-", f".{entry}.staging-")) or leftover == f".{entry}.staging":
                log.info("deleting %s, left by a run that did not finish", path)
                _delete(path)
    target = posixpath.join(parent, name)
    if tf.io.gfile.isdir(target):
        for leftover in tf.io.gfile.listdir(target):
            if leftover.startswith(BEAM_TEMP_PREFIX):
                log.info("deleting %s, Beam's temporary files of a run that did not finish", leftover)
                _delete(posixpath.join(target, leftover.rstrip("/")))


def replace(pairs: list[tuple[str, str]], run_id: str) -> None:
    """Puts each ``new`` at its ``dst``: old ones aside, new ones in, then old ones deleted.

    When any rename fails, what was moved is moved back (new ones to ``new``, old ones to ``dst``)
    and the error is raised: every ``dst`` is as it was.
    """
    aside: list[tuple[str, str]] = []
    moved: list[tuple[str, str]] = []
    try:
        for _, dst in pairs:
            if tf.io.gfile.exists(dst):
                parent, name = _split(dst)
                old = posixpath.join(parent, f".{name}.old-{run_id}")
                tf.io.gfile.rename(dst, old)
                aside.append((dst, old))
        for new, dst in pairs:
            tf.io.gfile.rename(new, dst)
            moved.append((new, dst))
    except BaseException:
        for new, dst in reversed(moved):
            _undo(dst, new)
        for dst, old in reversed(aside):
            _undo(old, dst)
        raise
    for _, old in aside:
        _delete(old)


def _undo(src: str, dst: str) -> None:
    try:
        tf.io.gfile.rename(src, dst)
    except Exception:
        log.exception("could not move %s back to %s while undoing a failed publish: move it by hand", src, dst)


def _delete(path: str) -> None:
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def input_root(spec: str) -> str | None:
    """The local folder or file an input spec reads (the part before a glob), or None for a
    built-in or remote input."""
    if spec.startswith("builtin:") or not _is_local(spec):
        return None
    glob = _GLOB.search(spec)
    return posixpath.dirname(spec[: glob.start()]) if glob else spec


def check_apart(output: str, option: str, inputs: dict[str, str | None], replaced_whole: bool = True) -> None:
    """Refuses an ``output`` equal to or inside one of ``inputs`` (``{option: path}``), or, when
    publishing replaces the whole ``output`` folder, holding one.

    A run would read its own output as input, or its publishing would replace the input.

    Raises:
      UserError: naming both options and the fix.
    """
    if not _is_local(output):
        return
    out = os.path.realpath(output)
    for name, spec in inputs.items():
        root = input_root(spec) if spec else None
        if root is None:
            continue
        src = os.path.realpath(root)
        if out == src or out.startswith(src.rstrip("/") + "/"):
            relation = "is" if out == src else "is inside"
        elif replaced_whole and src.startswith(out.rstrip("/") + "/"):
            relation = "holds"
        else:
            continue
        raise UserError(
            f"{option} {output} {relation} {name} {spec}: the run would read its own output or replace its input; "
            f"give {option} a folder that neither is, is inside, nor holds {root}"
        )
