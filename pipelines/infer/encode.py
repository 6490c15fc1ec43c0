"""``EncodeImages``: valid raw records -> ``RunInference`` -> Arrow tables of the predictions (no I/O).

:class:`EncodeImages` takes valid raw records (see ``inputs.formats.base``) and returns
``{"tables", "retried", "rejected"}``: Arrow tables of ``parquet``'s columns (about
``ROW_GROUP_BYTES`` each, written as one row group) and dead letters (``inputs.dead_letters``) for
the records the model failed on. A batch that fails is retried one record at a time (its good
records come out in ``retried``), so only the bad records are dead-lettered (reason
``corrupt_image`` when the decoder refuses the image, else ``inference_failed``). Given the model's
calibration it also counts the drift bins of every batch (``drift.CountDriftFn``). Results stay
whole batches from the model to the Arrow tables: no Python per record in between. The model
handler is a parameter, so tests inject their own.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.utils.windowed_value import WindowedValue

from models.model_info import Calibration
from pipelines.counters import NAMESPACE
from pipelines.infer import parquet
from pipelines.infer.drift import CountDriftFn
from pipelines.infer.model_handler import OneAtATime, concat_outputs
from pipelines.inputs.dead_letters import rejection
from pipelines.inputs.formats.base import SOURCE
from pipelines.inputs.images import PixelError
from pipelines.inputs.validation import check_decodes
from transforms import features
from transforms.image_ops import decoder_message
from transforms.layout import rejected_counter

STAGE = "infer"
PREDICTION_ROWS = "prediction_rows"
# In-memory Arrow bytes per table, i.e. per Parquet row group (before compression).
ROW_GROUP_BYTES = 64 * 1024 * 1024
_KEY_BYTES = 64  # rough in-memory size of a row's id, source and label


class ToArrowFn(beam.DoFn):
    """Batch results (``model_handler.batch_result``) -> ``pa.Table`` elements of ``schema`` (each a
    future row group).

    Buffers the batches of each window until they hold about ``row_group_bytes`` of the written
    outputs, then converts them in one go, column by column. (Not ``BatchElements``: Beam's element
    size sampling would pickle the batches.)
    """

    def __init__(self, schema: pa.Schema, row_group_bytes: int = ROW_GROUP_BYTES):
        self._schema = schema
        self._written = frozenset(schema.names)
        self._row_group_bytes = row_group_bytes
        self._rows = Metrics.counter(NAMESPACE, PREDICTION_ROWS)

    def start_bundle(self):
        self._buffers: dict = {}  # window -> [results, bytes]

    def process(self, result: PredictionResult, w=beam.DoFn.WindowParam):
        buffer = self._buffers.setdefault(w, [[], 0])
        buffer[0].append(result)
        outputs = result.inference
        buffer[1] += _KEY_BYTES * len(result.example) + sum(outputs[k].nbytes for k in outputs if k in self._written)
        if buffer[1] >= self._row_group_bytes:
            del self._buffers[w]
            yield self._table(buffer[0], w)

    def finish_bundle(self):
        for w, (results, _) in self._buffers.items():
            yield self._table(results, w)
        self._buffers = {}

    def _table(self, results: list[PredictionResult], w) -> WindowedValue:
        records = [record for result in results for record in result.example]
        keys = {
            parquet.ID: [r[features.ID] for r in records],
            parquet.SOURCE: [r[SOURCE] for r in records],
            parquet.LABEL: [r[features.LABEL] or None for r in records],
        }
        self._rows.inc(len(records))
        table = pa.Table.from_batches([parquet.record_batch(self._schema, keys, concat_outputs(results))])
        return WindowedValue(table, w.max_timestamp(), (w,))


class InferenceRejectionFn(beam.DoFn):
    """``(batch of one record, (type, repr, traceback))`` from RunInference -> a dead letter.

    Validation leaves the decoding of the images TensorFlow reads as they are to the model's graph
    (``validate_read(decode=False)``), so a record the model fails on alone is first decoded with
    the decoder that counts: if that refuses it, it is the same ``corrupt_image`` dead letter, with
    the same message, that validation gives; else ``inference_failed`` with the exception's own
    message (TensorFlow's errors have an empty repr).
    """

    def __init__(self):
        self._failed = Metrics.counter(NAMESPACE, rejected_counter(STAGE, "inference_failed"))
        self._corrupt = Metrics.counter(NAMESPACE, rejected_counter(STAGE, "corrupt_image"))

    def process(self, failed):
        batch, (_, _, lines) = failed
        error = decoder_message(lines[-1].strip() if lines else "")
        for record in batch:
            try:
                check_decodes(record[features.IMAGE])
            except PixelError as corrupt:
                self._corrupt.inc()
                yield rejection(record, STAGE, corrupt.reason, str(corrupt))
                continue
            self._failed.inc()
            yield rejection(record, STAGE, "inference_failed", error)


class EncodeImages(beam.PTransform):
    """Valid raw records -> ``{"tables", "retried", "rejected"}`` via ``RunInference``.

    ``tables`` and ``retried`` hold ``pa.Table`` elements of ``schema``: ``retried`` those of the
    records of failed batches that succeeded alone (empty unless a batch failed). They are two
    PCollections rather than one Flatten because Beam's local runner materializes a Flatten's whole
    input, which would hold every prediction in memory.

    Args:
      model_handler: returns one ``PredictionResult`` per batch, its records and their numpy
        outputs named like the columns (see ``model_handler.batch_result``).
      schema: from ``parquet.prediction_schema``.
      calibration: the model's; when given, the results' drift bins are counted.
    """

    def __init__(self, model_handler: ModelHandler, schema: pa.Schema, calibration: Calibration | None = None):
        super().__init__()
        self._handler = model_handler
        self._schema = schema
        self._calibration = calibration

    def expand(self, records):
        run = RunInference(self._handler, metrics_namespace=NAMESPACE).with_exception_handling()
        retry = RunInference(OneAtATime(self._handler), metrics_namespace=NAMESPACE).with_exception_handling()
        results, failed = records | "RunInference" >> run
        retried, still_failed = (
            failed.failed_inferences
            | "SplitFailedBatches" >> beam.FlatMap(lambda bad: bad[0])
            | "RetryOneByOne" >> retry
        )
        if self._calibration is not None:
            _ = results | "CountDrift" >> beam.ParDo(CountDriftFn(self._calibration))
            _ = retried | "CountRetriedDrift" >> beam.ParDo(CountDriftFn(self._calibration))
        return {
            "tables": results | "ToArrow" >> beam.ParDo(ToArrowFn(self._schema)),
            "retried": retried | "RetriedToArrow" >> beam.ParDo(ToArrowFn(self._schema)),
            "rejected": still_failed.failed_inferences | "ToDeadLetters" >> beam.ParDo(InferenceRejectionFn()),
        }
