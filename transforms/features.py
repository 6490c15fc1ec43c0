"""Feature keys shared by every stage.

Raw features (what preprocessing reads and the exported model's callers supply):
  ``id`` (string, stable record id), ``label`` (string, ``""`` when unknown) and ``image``
  (encoded image bytes: PNG, JPEG, BMP or GIF).
Transformed features (what training reads from the TFRecords):
  ``id``, ``label``, ``label_index`` (int64, -1 when unknown), ``pixels`` (float32 HxWxC in [0, 1],
  the reconstruction target) and ``inputs`` (float32 HxWxC, the model input after normalization).
Statistics outputs (the train split's full-pass analyzer values, repeated per example; produced
only for ``stats.json``, never written to the TFRecords): ``stats_*`` below.
"""

ID = "id"
LABEL = "label"
IMAGE = "image"

LABEL_INDEX = "label_index"
PIXELS = "pixels"
INPUTS = "inputs"

RAW_FEATURES = (ID, LABEL, IMAGE)
TRANSFORMED_FEATURES = (ID, LABEL, LABEL_INDEX, PIXELS, INPUTS)

STATS_EXAMPLES = "stats_examples"
STATS_PIXEL_MIN = "stats_pixel_min"
STATS_PIXEL_MAX = "stats_pixel_max"
STATS_PIXEL_MEAN = "stats_pixel_mean"
STATS_PIXEL_STDDEV = "stats_pixel_stddev"
STATS_FEATURES = (STATS_EXAMPLES, STATS_PIXEL_MIN, STATS_PIXEL_MAX, STATS_PIXEL_MEAN, STATS_PIXEL_STDDEV)

LABEL_VOCABULARY = "label_vocabulary"
UNKNOWN_LABEL = ""
UNKNOWN_LABEL_INDEX = -1
