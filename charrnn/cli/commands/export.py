"""`charrnn export`: a trained model as a file that runs without charrnn: an ONNX step graph or an HTML page."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from charrnn.choices import ExportFormat, ExportWeights
from charrnn.cli.common import CheckpointOption, err, examples, guarded

EPILOG = examples(
    "charrnn export -c checkpoints/poems -o poems.onnx      # for onnxruntime",
    "charrnn export --format html -o poems.html            # a page that samples (fp16 weights)",
    "charrnn export --format html --weights int8 -o p.html  # a smaller page",
)


def export(
    output: Annotated[str, typer.Option("--output", "-o", help="The file to write.", show_default=False)],
    checkpoint: CheckpointOption = None,
    kind: Annotated[
        ExportFormat, typer.Option("--format", help="onnx: the one-character step graph; html: a page that samples.")
    ] = ExportFormat.ONNX,
    weights: Annotated[
        Optional[ExportWeights],
        typer.Option(
            help="Weights the file stores: html fp16 (fp32 for the CLI's exact text, int8 for a smaller page); "
            "onnx fp32 only.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write the model as a file other programs run without charrnn or torch (docs/export.md)."""
    with guarded():
        from charrnn.errors import ConfigError
        from charrnn.store.runs import resolve_checkpoint

        if kind is ExportFormat.ONNX and weights not in (None, ExportWeights.FP32):
            raise ConfigError(f"--weights {weights} is for --format html; --format onnx exports fp32 weights")
        path = str(resolve_checkpoint(checkpoint))
        if kind is ExportFormat.ONNX:
            from charrnn.export.onnx import export_onnx

            summary = export_onnx(path, output)
        else:
            from charrnn.export.html import export_html

            summary = export_html(path, output, (weights or ExportWeights.FP16).value)
        err(f"charrnn: {summary}")
