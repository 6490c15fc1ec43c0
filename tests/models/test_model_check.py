"""Model folders are checked before anything of them runs: a crafted SavedModel that writes files at
load and when called, tampered or incomplete ``model_info.json``, foreign SavedModels, file ops on
other paths; a real export passes, through infer, evaluate and warm starts alike."""

import dataclasses
import json
import shutil

import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from models import model_check
from models.config import ModelConfig, TrainConfig
from models.model_check import DENIED_OPS, ModelCheckError, check_export, export_hash
from models.model_info import ModelInfo, saved_model_path
from models.training import train
from pipelines.config import EvaluateConfig, InferConfig
from pipelines.evaluate.exported import ExportedModel
from pipelines.evaluate.job import run_evaluate
from pipelines.infer.job import run_infer
from pipelines.inputs.images import encode_png
from tests.conftest import HEIGHT, WIDTH, known_pixels
from transforms.errors import UserError

SHAPE = (HEIGHT, WIDTH, 1)
LATENT_DIM = 4


class _Stealer(tf.saved_model.experimental.TrackableResource):
    """A resource whose initializer, run by the loader, writes a file."""

    def __init__(self, path: str):
        self._path = path
        super().__init__()

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.string, shape=[], shared_name="")

    def _initialize(self):
        tf.io.write_file(self._path, "written when loaded")
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value="x")


class _CraftedModel(tf.Module):
    """Looks like an Hourglass export (same signatures, names and shapes) but writes files: at load
    (``_Stealer``) and on every call (a copy of the first image it is given)."""

    def __init__(self, load_path: str, call_path: str, body=None):
        super().__init__()
        self.stealer = _Stealer(load_path)
        self._call_path = call_path
        self._body = body or (lambda images: tf.io.write_file(call_path, images[0]))
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        self.encode = tf.function(self._encode, input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        self.decode = tf.function(
            self._decode, input_signature=[tf.TensorSpec([None, LATENT_DIM], tf.float32, name="latent")]
        )

    def _latent(self, images):
        self._body(images)
        return tf.zeros([tf.shape(images)[0], LATENT_DIM])

    def _serve(self, images):
        n = tf.shape(images)[0]
        return {
            "latent": self._latent(images),
            "reconstruction": tf.zeros(tf.concat([[n], SHAPE], 0)),
            "reconstruction_error": tf.zeros([n]),
        }

    def _encode(self, images):
        return {"latent": self._latent(images)}

    def _decode(self, latent):
        return {"reconstruction": tf.zeros(tf.concat([tf.shape(latent)[:1], SHAPE], 0))}


def _save_crafted(model_dir, module) -> str:
    """Saves ``module`` as ``MODEL_DIR/saved_model`` with a ``model_info.json`` whose hash matches (as an
    attacker who edits the folder can make it)."""
    export_dir = saved_model_path(str(model_dir))
    signatures = {"serving_default": module.serve, "encode": module.encode, "decode": module.decode}
    tf.saved_model.save(module, export_dir, signatures=signatures)
    info = ModelInfo("dense", LATENT_DIM, SHAPE, "mse", {"negative_slope": 0.2}, model_hash="")
    dataclasses.replace(info, model_hash=export_hash(export_dir, info)).write(export_dir)
    return str(model_dir)


@pytest.fixture
def crafted(tmp_path):
    """(model_dir, file written at load, file written when called); neither file exists yet."""
    load_file, call_file = tmp_path / "written-at-load", tmp_path / "stolen-image"
    model_dir = _save_crafted(tmp_path / "crafted", _CraftedModel(str(load_file), str(call_file)))
    load_file.unlink(missing_ok=True)  # creating the resource above ran its initializer once
    return model_dir, load_file, call_file


def _copy_export(trained, tmp_path) -> str:
    model_dir = tmp_path / "copy"
    shutil.copytree(saved_model_path(trained[0].model_dir), saved_model_path(str(model_dir)))
    return str(model_dir)


def _edit_info(model_dir: str, **changes) -> None:
    path = f"{saved_model_path(model_dir)}/model_info.json"
    with open(path) as f:
        info = json.load(f)
    info.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del info[key]
    with open(path, "w") as f:
        json.dump(info, f)


def test_a_normal_export_passes_and_its_hash_covers_files_and_fields(trained):
    cfg, _ = trained
    info = check_export(cfg.model_dir)
    assert info == ModelInfo.read(cfg.model_dir)
    assert info.model_hash == export_hash(saved_model_path(cfg.model_dir), info) and len(info.model_hash) == 64


@pytest.mark.parametrize(
    "load",
    [
        lambda model_dir, trust: ExportedModel(model_dir, trust_model=trust),
        lambda model_dir, trust: run_infer(
            InferConfig(
                model_dir=model_dir, input="builtin:mnist", limit=3, output=model_dir + "-out", trust_model=trust
            )
        ),
        lambda model_dir, trust: run_evaluate(
            EvaluateConfig(model_dir=model_dir, input="builtin:mnist", output=model_dir + "-report", trust_model=trust)
        ),
    ],
    ids=["exported-model", "infer", "evaluate"],
)
def test_a_model_that_writes_files_is_refused_before_it_runs(crafted, load):
    model_dir, load_file, call_file = crafted
    with pytest.raises(ModelCheckError) as refused:
        load(model_dir, False)
    message = str(refused.value)
    assert "ops that touch files, the network or run Python: WriteFile" in message
    assert "pass --trust-model if you made this folder yourself" in message
    assert not load_file.exists() and not call_file.exists()


def test_the_crafted_model_does_write_when_trusted(crafted):
    """What the check prevents (the files are under tmp_path): the loader runs the initializer, a call the body."""
    model_dir, load_file, call_file = crafted
    model = ExportedModel(model_dir, trust_model=True)
    assert load_file.read_text() == "written when loaded" and not call_file.exists()
    image = encode_png(known_pixels(0, 0))
    assert model.encode([image]).shape == (1, LATENT_DIM)
    assert call_file.read_bytes() == image


@pytest.mark.parametrize(
    "body, op",
    [
        (lambda images: tf.io.read_file("/etc/hostname"), "ReadFile"),
        (lambda images: tf.print(images, output_stream="file:///tmp/x"), "PrintV2"),
        (lambda images: tf.numpy_function(lambda x: x, [images], tf.string), "PyFunc"),
        (lambda images: tf.py_function(lambda x: x, [images], tf.string), "EagerPyFunc"),
        (lambda images: tf.io.matching_files("/home/*"), "MatchingFiles"),
    ],
    ids=["read-file", "print-to-file", "numpy-function", "py-function", "list-files"],
)
def test_every_denied_op_kind_is_named(body, op, tmp_path):
    model_dir = _save_crafted(tmp_path / "m", _CraftedModel(str(tmp_path / "x"), str(tmp_path / "y"), body))
    with pytest.raises(ModelCheckError, match=rf"run Python: [^;]*\b{op} \(in __inference_"):
        check_export(model_dir)


def test_a_saver_op_on_another_path_is_refused(tmp_path):
    target = tmp_path / "planted"

    def save_elsewhere(images):
        tf.raw_ops.SaveV2(prefix=str(target), tensor_names=["x"], shape_and_slices=[""], tensors=[images])

    model_dir = _save_crafted(tmp_path / "m", _CraftedModel(str(tmp_path / "x"), str(tmp_path / "y"), save_elsewhere))
    with pytest.raises(ModelCheckError, match=r"file ops on paths other than its own variables and assets: SaveV2"):
        check_export(model_dir, trust=False)
    assert not list(tmp_path.glob("planted*"))


def _real_graph(trained) -> saved_model_pb2.SavedModel:
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(f"{saved_model_path(trained[0].model_dir)}/saved_model.pb", "rb") as f:
        saved_model.ParseFromString(f.read())
    return saved_model


def _function_with(saved_model, op: str):
    (function,) = [f for f in saved_model.meta_graphs[0].graph_def.library.function if op in str(f.node_def)]
    return function, next(n for n in function.node_def if n.op == op)


def test_a_real_export_holds_the_saver_and_vocabulary_file_ops_and_passes(trained):
    saved_model = _real_graph(trained)
    ops = {node.op for f in saved_model.meta_graphs[0].graph_def.library.function for node in f.node_def}
    assert {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "InitializeTableFromTextFileV2"} <= ops
    assert model_check.scan_graph(saved_model) == []


def _plant_vocabulary_path(saved_model):
    """The vocabulary table reads /etc/passwd instead of its asset."""
    function, table_init = _function_with(saved_model, "InitializeTableFromTextFileV2")
    planted = function.node_def.add(name="planted", op="Const")
    planted.attr["dtype"].type = tf.string.as_datatype_enum
    planted.attr["value"].tensor.CopyFrom(tf.make_tensor_proto("/etc/passwd"))
    table_init.input[1] = "planted:output:0"
    return ["InitializeTableFromTextFileV2"], function.signature.name


def _climb_out_of_variables(saved_model):
    """The saver writes its shards to ``<variables>/../../../escaped`` instead of ``<variables>_temp/part``."""
    function, _ = _function_with(saved_model, "SaveV2")
    suffix = next(
        n for n in function.node_def if n.op == "Const" and n.attr["value"].tensor.string_val == [b"_temp/part"]
    )
    suffix.attr["value"].tensor.string_val[0] = b"/../../../escaped"
    return ["MergeV2Checkpoints", "SaveV2"], function.signature.name


def _join_with_a_separator(saved_model):
    """The saver's path pieces joined by ``/../`` (a StringJoin attribute, not an input)."""
    function, join = _function_with(saved_model, "StringJoin")
    join.attr["separator"].s = b"/../"
    return ["MergeV2Checkpoints", "SaveV2"], function.signature.name


def _point_the_asset_elsewhere(saved_model):
    """The vocabulary asset names a file outside ``assets/``."""
    saved_model.meta_graphs[0].asset_file_def[0].filename = "../../../../etc/passwd"
    return ["the asset '../../../../etc/passwd'"], "asset_file_def"


@pytest.mark.parametrize(
    "tamper", [_plant_vocabulary_path, _climb_out_of_variables, _join_with_a_separator, _point_the_asset_elsewhere]
)
def test_file_ops_of_a_real_export_pass_in_their_own_form_only(trained, tamper):
    saved_model = _real_graph(trained)
    ops, scope = tamper(saved_model)
    where = ", ".join(f"{op} (in {scope})" for op in ops)
    assert model_check.scan_graph(saved_model) == [
        f"its graph uses file ops on paths other than its own variables and assets: {where}"
    ]


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"image_shape": [WIDTH, HEIGHT, 1]},
            rf"serving_default's outputs are .*latent \(N, 4\), reconstruction \(N, {HEIGHT}, {WIDTH}, 1\)",
        ),
        ({"latent_dim": 8}, r"encode's outputs are latent \(N, 4\), not latent \(N, 8\)"),
        ({"kind": "deep"}, r"its model_hash does not match its files and model_info.json"),
        ({"denoising": True, "noise": "gaussian:0.5"}, r"serving_default's outputs are .* not .*denoised \(N,"),
        ({"variational": True}, r"its signatures are decode, encode, serving_default, not decode, encode, interpolate"),
    ],
    ids=["image_shape", "latent_dim", "kind", "denoising", "variational"],
)
def test_a_tampered_model_info_is_refused(trained, tmp_path, changes, message):
    model_dir = _copy_export(trained, tmp_path)
    _edit_info(model_dir, **changes)
    with pytest.raises(ModelCheckError, match=message):
        check_export(model_dir)
    assert check_export(model_dir, trust=True).kind == changes.get("kind", "dense")


def test_a_tampered_model_info_stops_infer_before_any_output(trained, image_tree, tmp_path):
    model_dir = _copy_export(trained, tmp_path)
    _edit_info(model_dir, latent_dim=8)
    cfg = InferConfig(model_dir=model_dir, input=str(image_tree[0]), output=str(tmp_path / "out"))
    with pytest.raises(ModelCheckError, match=r"copy/saved_model is refused: .*latent \(N, 8\)"):
        run_infer(cfg)
    assert not (tmp_path / "out").exists()


def test_a_changed_weight_file_is_refused(trained, tmp_path):
    model_dir = _copy_export(trained, tmp_path)
    (index,) = (tmp_path / "copy" / "saved_model" / "variables").glob("*.data-*")
    data = bytearray(index.read_bytes())
    data[-1] ^= 1
    index.write_bytes(bytes(data))
    with pytest.raises(ModelCheckError, match="model_hash does not match"):
        check_export(model_dir)


def test_missing_keys_are_named(trained, tmp_path):
    model_dir = _copy_export(trained, tmp_path)
    _edit_info(model_dir, latent_dim=None, model_hash=None)
    with pytest.raises(UserError, match=r"model_info.json lacks latent_dim, model_hash; re-export the model"):
        check_export(model_dir)


def test_a_foreign_saved_model_is_named(tmp_path, trained):
    class Foreign(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def predict(self, x):
            return {"y": tf.reduce_sum(x, axis=1)}

    module = Foreign()
    tf.saved_model.save(module, saved_model_path(str(tmp_path / "f")), signatures={"serving_default": module.predict})
    with pytest.raises(UserError, match="is a SavedModel that Hourglass did not export"):
        check_export(str(tmp_path / "f"))

    shutil.copy(f"{saved_model_path(trained[0].model_dir)}/model_info.json", saved_model_path(str(tmp_path / "f")))
    with pytest.raises(
        ModelCheckError, match=r"its signatures are serving_default, not decode, encode, serving_default"
    ):
        check_export(str(tmp_path / "f"))


def test_a_warm_start_from_a_tampered_export_is_refused_unless_trusted(trained, tmp_path):
    source = _copy_export(trained, tmp_path)
    _edit_info(source, params={"negative_slope": 0.3})  # as its own identity too, so only the check tells
    cfg, trained_result = trained
    model = ModelConfig("dense", latent_dim=4, params={"negative_slope": 0.3})
    warm = TrainConfig(cfg.data_dir, str(tmp_path / "w"), model, 1, 8, 1e-6, warm_start=source)
    with pytest.raises(ModelCheckError, match="model_hash does not match"):
        train(warm)
    assert not (tmp_path / "w" / "saved_model").exists()
    result = train(dataclasses.replace(warm, model_dir=str(tmp_path / "t"), trust_model=True))
    assert result.history["eval_loss"][0] < trained_result.history["eval_loss"][0]  # started from its weights


def test_every_denied_op_is_a_registered_op():
    from tensorflow.python.framework import op_def_registry

    assert [op for op in sorted(DENIED_OPS) if op_def_registry.get(op) is None] == []
