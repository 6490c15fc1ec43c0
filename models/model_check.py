"""Checks a model folder before anything of it runs: infer, evaluate and warm starts call it first.

A SavedModel is a program: its graph can read and write files, or run Python, when it is loaded
and when it is called. So before ``tf.saved_model.load`` (or a warm start's read of the variables),
:func:`check_export` reads ``model_info.json`` and parses ``saved_model.pb`` without loading it:

1. the contract: the signatures an Hourglass export has (``serving_default``, ``encode``,
   ``decode``, and ``interpolate`` for a VAE) with the input and output names and shapes that
   ``model_info.json`` implies (``image_shape``, ``latent_dim``, ``corruption``, ``denoising``, ``variational``);
2. the graph: every node of every meta graph and of every function in its library is scanned for
   the ops that touch the file system, the network or run Python (:data:`DENIED_OPS`, a superset of
   ``saved_model_cli scan``'s ``ReadFile``, ``WriteFile``, ``PrintV2``). Two kinds of file ops every
   export holds are allowed in their legitimate form only: the saver's ``SaveV2``/``RestoreV2``/
   ``MergeV2Checkpoints`` when their path comes from the saver's own file name (what the loader
   passes: the export's ``variables/``), and ``InitializeTableFromTextFileV2`` (tf.Transform's
   vocabularies) when its file is one of the export's own assets (named inside ``assets/``);
3. the hash: ``model_hash`` is :func:`export_hash`, a SHA-256 over ``saved_model.pb``, ``variables/``,
   ``assets/`` and every other field of ``model_info.json``, so a changed file or a tampered
   ``kind``, ``image_shape``, ``latent_dim``, ... no longer matches. The hash detects changes;
   it does not prove who made the folder (whoever edits the folder can recompute it).

Element contract: ``check_export(model_dir, trust)`` -> the export's :class:`ModelInfo`, or raises
:class:`ModelCheckError` naming the folder, what failed and the fix. With ``trust`` only
``model_info.json`` is read (and a warning logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
from collections.abc import Iterator

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from models.model_info import IMAGE_OUTPUTS, LATENT, MODEL_INFO, RECONSTRUCTION, ModelInfo, saved_model_path
from transforms.errors import UserError

log = logging.getLogger(__name__)

SAVED_MODEL_PB = "saved_model.pb"
HASHED = (SAVED_MODEL_PB, "variables", "assets")

# Ops that run Python, touch files (read, write, list, memory-map, log to a file) or reach the network.
DENIED_OPS = frozenset(
    {
        # Python
        "PyFunc", "PyFuncStateless", "EagerPyFunc",
        # files, directly
        "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "Save", "SaveSlices", "Restore", "RestoreSlice",
        "DTensorRestoreV2", "InitializeTableFromTextFile", "LoadAndRemapMatrix", "GenerateVocabRemapping",
        "Skipgram", "FixedUnigramCandidateSampler", "RecordInput", "CalibrationStatisticsSaver", "DumpTensor",
        "FileSystemSetConfiguration", "DecodeProtoV2", "EncodeProto",
        # printing and debugging (to stderr, or to a file or URL they name)
        "Print", "PrintV2", "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
        "DebugNumericSummary", "DebugNumericSummaryV2",
        # readers
        "TextLineReader", "TextLineReaderV2", "WholeFileReader", "WholeFileReaderV2", "TFRecordReader",
        "TFRecordReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "LMDBReader",
        # datasets over files, caches and snapshots, data services
        "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset",
        "FixedLengthRecordDatasetV2", "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset", "LMDBDataset",
        "ExperimentalLMDBDataset", "SqlDataset", "ExperimentalSqlDataset", "MatchingFilesDataset",
        "ExperimentalMatchingFilesDataset", "CacheDataset", "CacheDatasetV2", "SnapshotDataset", "SnapshotDatasetV2",
        "SnapshotDatasetReader", "SnapshotNestedDatasetReader", "SnapshotChunkDataset", "ListSnapshotChunksDataset",
        "SaveDataset", "SaveDatasetV2", "LoadDataset", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
        "DistributedSave", "DataServiceDataset", "DataServiceDatasetV2", "DataServiceDatasetV3",
        "DataServiceDatasetV4", "RegisterDataset", "RegisterDatasetV2",
        # summaries and event files
        "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteScalarSummary",
        "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary",
        "WriteRawProtoSummary", "ImportEvent",
    }
)  # fmt: skip

# File ops allowed in one form only: op -> the indices of their path inputs.
SAVER_OPS = {"SaveV2": (0,), "RestoreV2": (0,), "MergeV2Checkpoints": (0, 1)}
ASSET_OPS = {"InitializeTableFromTextFileV2": (1,)}
# Ops a path goes through unchanged or extended: op -> the indices of the inputs that are part of it.
_PATH_STEPS = {"Identity": (0,), "StringJoin": None, "ShardedFilename": (0,), "Select": (1, 2), "SelectV2": (1, 2)}
_PATH_STEPS.update({"Pack": None, "ReadVariableOp": (0,)})
# Calls whose data inputs are the callee's arguments after the first ``offset`` ones.
_CALL_OFFSETS = {"PartitionedCall": 0, "StatefulPartitionedCall": 0, "If": 1, "StatelessIf": 1, "Case": 1}
_CALL_OFFSETS["StatelessCase"] = 1

_FIX = "re-export it with `hourglass train`, or pass --trust-model if you made this folder yourself"


class ModelCheckError(UserError):
    """A model folder that is not, or no longer, the export ``model_info.json`` describes."""


def check_export(model_dir: str, trust: bool = False) -> ModelInfo:
    """The :class:`ModelInfo` of ``MODEL_DIR/saved_model`` once its contract, graph and hash are checked.

    Args:
      model_dir: a training output folder.
      trust: skip the checks of the SavedModel (``--trust-model``); ``model_info.json`` is still read.

    Raises:
      UserError: no export, or an invalid ``model_info.json``.
      ModelCheckError: a signature, input or output differs from ``model_info.json``, the graph holds
        a denied op, or the hash does not match (names what failed and the fix).
    """
    info = ModelInfo.read(model_dir)
    export_dir = saved_model_path(model_dir)
    if trust:
        log.warning("--trust-model: %s is loaded without its checks", export_dir)
        return info
    saved_model = _parse(export_dir)
    problems = [*check_signatures(saved_model, info), *scan_graph(saved_model)]
    if info.calibration is not None and len(info.calibration.latent_mean) != info.latent_dim:
        dims = len(info.calibration.latent_mean)
        problems.append(f"its calibration has {dims} latent dimensions, not latent_dim {info.latent_dim}")
    if not problems and export_hash(export_dir, info) != info.model_hash:
        problems.append(
            "its model_hash does not match its files and model_info.json: they changed since the export "
            "(or an older Hourglass exported it)"
        )
    if problems:
        raise ModelCheckError(f"{export_dir} is refused: {'; '.join(problems)}; {_FIX}")
    return info


def export_hash(export_dir: str, info: ModelInfo) -> str:
    """SHA-256 over the loaded files (``saved_model.pb``, ``variables/``, ``assets/``: names and bytes) and
    every field of ``info`` but ``model_hash``: what ``model_info.json`` records as ``model_hash``."""
    digest = hashlib.sha256()
    fields = {key: value for key, value in info.to_json().items() if key != "model_hash"}
    digest.update(json.dumps(fields, sort_keys=True).encode())
    for name in sorted(_hashed_files(export_dir)):
        digest.update(f"\0{name}\0".encode())
        with tf.io.gfile.GFile(os.path.join(export_dir, name), "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _hashed_files(export_dir: str) -> Iterator[str]:
    """The files the loader reads, relative to ``export_dir`` (with ``/``)."""
    yield SAVED_MODEL_PB
    for top in HASHED[1:]:
        root = os.path.join(export_dir, top)
        if not tf.io.gfile.isdir(root):
            continue
        for folder, _, files in tf.io.gfile.walk(root):
            relative = os.path.relpath(folder, export_dir).replace(os.sep, "/")
            yield from (posixpath.join(relative, name) for name in files)


def _parse(export_dir: str) -> saved_model_pb2.SavedModel:
    path = os.path.join(export_dir, SAVED_MODEL_PB)
    if not tf.io.gfile.exists(path):
        raise ModelCheckError(
            f"{export_dir} has a {MODEL_INFO} but no {SAVED_MODEL_PB}: it holds no SavedModel; {_FIX}"
        )
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        try:
            saved_model.ParseFromString(f.read())
        except Exception as error:  # protobuf's DecodeError, whose module differs between implementations
            raise ModelCheckError(f"{path} is not a SavedModel ({error}); {_FIX}") from error
    if len(saved_model.meta_graphs) != 1:
        raise ModelCheckError(
            f"{path} holds {len(saved_model.meta_graphs)} meta graphs, an Hourglass export one; {_FIX}"
        )
    return saved_model


# --- 1. the contract --------------------------------------------------------------------------------


def expected_signatures(info: ModelInfo) -> dict[str, tuple[dict, dict]]:
    """Signature name -> (inputs, outputs), each a mapping of names to shapes (-1: any size)."""
    image = [-1, *info.image_shape]
    latent = [-1, info.latent_dim]
    images = {"images": [-1]}
    shapes = {LATENT: latent, **dict.fromkeys(IMAGE_OUTPUTS, image)}  # the others: one value per image
    serving = {name: shapes.get(name, [-1]) for name in info.outputs}
    signatures = {
        "serving_default": (images, serving),
        "encode": (images, {LATENT: latent}),
        "decode": ({LATENT: latent}, {RECONSTRUCTION: image}),
    }
    if info.variational:
        interpolate_inputs = {"images_a": [-1], "images_b": [-1], "alphas": [-1]}
        signatures["interpolate"] = (interpolate_inputs, {RECONSTRUCTION: [-1, -1, *info.image_shape]})
    return signatures


def check_signatures(saved_model: saved_model_pb2.SavedModel, info: ModelInfo) -> list[str]:
    """What differs between the export's signatures and those ``info`` implies ([] when they agree)."""
    found = {
        name: signature
        for name, signature in saved_model.meta_graphs[0].signature_def.items()
        if not name.startswith("__")  # the loader's own, e.g. __saved_model_init_op
    }
    expected = expected_signatures(info)
    if set(found) != set(expected):
        return [
            f"its signatures are {', '.join(sorted(found)) or 'none'}, not {', '.join(sorted(expected))} "
            f"(as {MODEL_INFO} says: variational {str(info.variational).lower()})"
        ]
    problems = []
    for name, (inputs, outputs) in expected.items():
        signature = found[name]
        for side, tensors, wanted in (("inputs", signature.inputs, inputs), ("outputs", signature.outputs, outputs)):
            shapes = {key: _shape(tensor) for key, tensor in tensors.items()}
            if shapes != wanted:
                problems.append(f"{name}'s {side} are {_describe(shapes)}, not {_describe(wanted)} ({MODEL_INFO})")
    return problems


def _shape(tensor: meta_graph_pb2.TensorInfo) -> list[int] | None:
    return None if tensor.tensor_shape.unknown_rank else [d.size for d in tensor.tensor_shape.dim]


def _describe(shapes: dict) -> str:
    def dims(shape):
        return "?" if shape is None else "(" + ", ".join("N" if d == -1 else str(d) for d in shape) + ")"

    return ", ".join(f"{name} {dims(shape)}" for name, shape in sorted(shapes.items()))


# --- 2. the graph -----------------------------------------------------------------------------------


def scan_graph(saved_model: saved_model_pb2.SavedModel) -> list[str]:
    """The denied ops of every meta graph, and file ops outside their legitimate form ([] when none)."""
    problems = []
    for meta_graph in saved_model.meta_graphs:
        graph = _Graph(meta_graph)
        denied, misused = {}, {}
        for scope, node in graph.nodes():
            if node.op in DENIED_OPS:
                denied.setdefault(node.op, set()).add(scope)
            elif not graph.legitimate(scope, node):
                misused.setdefault(node.op, set()).add(scope)
        if denied:
            problems.append(f"its graph holds ops that touch files, the network or run Python: {_where(denied)}")
        for asset in meta_graph.asset_file_def:  # the loader reads ASSETS_DIR/filename
            if not _relative(asset.filename.encode()):
                misused.setdefault(f"the asset {asset.filename!r}", set()).add("asset_file_def")
        if misused:
            where = _where(misused)
            problems.append(f"its graph uses file ops on paths other than its own variables and assets: {where}")
    return problems


def _relative(text: bytes) -> bool:
    """A suffix that keeps a path where it is: not absolute, no ``..``, no scheme."""
    return not text.startswith(b"/") and b".." not in text and b":" not in text


def _where(found: dict[str, set[str]], shown: int = 3) -> str:
    """``Op (in f, g)`` per op, naming at most ``shown`` scopes of each."""
    parts = []
    for op, scopes in sorted(found.items()):
        names = sorted(scopes)
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        parts.append(f"{op} (in {', '.join(names[:shown])}{more})")
    return ", ".join(parts)


_TOP = "the top-level graph"


class _Graph:
    """One meta graph's nodes by scope (the top-level graph and each library function), its calls,
    and where the path inputs of its file ops come from."""

    def __init__(self, meta_graph: meta_graph_pb2.MetaGraphDef):
        self.functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}
        self.scopes = {_TOP: {n.name: n for n in meta_graph.graph_def.node}}
        self.scopes.update({name: {n.name: n for n in f.node_def} for name, f in self.functions.items()})
        self.saver_file = meta_graph.saver_def.filename_tensor_name.split(":")[0]
        self.asset_files = {a.tensor_info.name.split(":")[0] for a in meta_graph.asset_file_def}
        objects = meta_graph.object_graph_def
        self.bound = {
            name: [objects.nodes[i].WhichOneof("kind") for i in f.bound_inputs]
            for name, f in objects.concrete_functions.items()
        }
        self.callers: dict[str, list[tuple[str, object, int]]] = {}
        for scope, node in self.nodes():
            for callee, offset in self._callees(node):
                self.callers.setdefault(callee, []).append((scope, node, offset))

    def nodes(self) -> Iterator[tuple[str, object]]:
        for scope, nodes in self.scopes.items():
            for node in nodes.values():
                yield scope, node

    def _callees(self, node) -> Iterator[tuple[str, int | None]]:
        """(function, offset of its arguments in the node's inputs, None when they do not map) per call."""
        if node.op in self.functions:
            yield node.op, 0
        for attr in node.attr.values():
            for func in [attr.func] if attr.HasField("func") else attr.list.func:
                if func.name in self.functions:
                    yield func.name, _CALL_OFFSETS.get(node.op)

    def legitimate(self, scope: str, node) -> bool:
        """False for a saver op whose path is not built from the saver's file name (and relative
        constants only), and for an asset op whose file is not exactly one of the export's assets."""
        if node.op in SAVER_OPS:
            return all(self._roots(scope, node.input[i]) == {"saver"} for i in SAVER_OPS[node.op])
        if node.op in ASSET_OPS:
            return all(self._roots(scope, node.input[i], exact=True) == {"asset"} for i in ASSET_OPS[node.op])
        return True

    def _roots(self, scope: str, ref: str, exact: bool = False, seen=None) -> set[str]:
        """Where the string ``ref`` of ``scope`` comes from: ``saver``, ``asset`` or ``other``.

        Follows path steps (only ``Identity`` and variable reads when ``exact``), function arguments
        to every call site and to captured objects, and variables to what is assigned to them.
        Relative constants without ``..`` (a shard suffix) add nothing; anything else is ``other``.
        """
        seen = set() if seen is None else seen
        if (scope, ref) in seen:
            return set()
        seen.add((scope, ref))
        name = ref.split(":")[0]
        nodes = self.scopes[scope]
        if name not in nodes:
            return self._argument_roots(scope, name, exact, seen) if scope != _TOP else {"other"}
        node = nodes[name]
        if scope == _TOP and node.op == "Placeholder" and name in (self.saver_file, *self.asset_files):
            return {"saver"} if name == self.saver_file else {"asset"}  # fed by the loader
        if node.op == "Const" and not exact:
            return set() if all(map(_relative, node.attr["value"].tensor.string_val)) else {"other"}
        if node.op == "StringJoin" and not _relative(node.attr["separator"].s):
            return {"other"}
        if node.op == "VarHandleOp" and scope == _TOP:
            assigned = [n for n in nodes.values() if n.op == "AssignVariableOp" and n.input[0] == name]
            return set().union(*(self._roots(scope, n.input[1], exact, seen) for n in assigned)) or {"other"}
        steps = {"Identity": (0,), "ReadVariableOp": (0,)} if exact else _PATH_STEPS
        if node.op not in steps:
            return {"other"}
        inputs = [i for i in node.input if not i.startswith("^")]
        picked = range(len(inputs)) if steps[node.op] is None else steps[node.op]
        return set().union(*(self._roots(scope, inputs[i], exact, seen) for i in picked))

    def _argument_roots(self, scope: str, arg: str, exact: bool, seen) -> set[str]:
        """The roots of argument ``arg`` of function ``scope``: what each caller passes, or its captured object."""
        names = [a.name for a in self.functions[scope].signature.input_arg]
        if arg not in names:
            return {"other"}
        index = names.index(arg)
        roots = set()
        bound = self.bound.get(scope)
        if bound is not None:  # the loader calls it: its arguments are the caller's, then its captures
            first_capture = len(names) - len(bound)
            roots.add("asset" if index >= first_capture and bound[index - first_capture] == "asset" else "other")
        for caller_scope, node, offset in self.callers.get(scope, ()):
            inputs = [i for i in node.input if not i.startswith("^")]
            if offset is None or offset + index >= len(inputs):
                roots.add("other")
            else:
                roots |= self._roots(caller_scope, inputs[offset + index], exact, seen)
        return roots or {"other"}
