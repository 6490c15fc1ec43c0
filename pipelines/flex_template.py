"""Dataflow Flex Template entry point: maps the template's parameters to ``hourglass infer``.

The template image sets ``FLEX_TEMPLATE_PYTHON_PY_FILE`` to this file (see deploy/README.md).

Dataflow passes template parameters as ``--name=value`` flags together with its own pipeline
flags; the template parameters (``deploy/dataflow/metadata.json``) become our options, every
other flag is handed to Beam after ``--``.
"""

import sys

from pipelines.cli import main

TEMPLATE_OPTIONS = {"model_dir": "--model-dir", "input": "--input", "output": "--output", "run_id": "--run-id"}


def template_argv(argv: list[str]) -> list[str]:
    """``--model_dir=x --runner=DataflowRunner`` -> ``infer --model-dir x -- --runner=DataflowRunner``."""
    ours, beam = [], []
    for arg in argv:
        name, _, value = arg.removeprefix("--").partition("=")
        if name in TEMPLATE_OPTIONS:
            ours += [TEMPLATE_OPTIONS[name], value]
        else:
            beam.append(arg)
    return ["infer", *ours, "--", *beam]


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *template_argv(sys.argv[1:])]
    main()
