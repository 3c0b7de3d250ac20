"""`lnca export`: a model's restore of one tile as an ONNX graph (lnca_cli.export), for other tools."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from lnca_cli.cli._options import StepsOption, friendly


@friendly
def export(
    model: Annotated[str, typer.Argument(help="Model name, task (its default model) or .safetensors path, as -m "
                                         "takes.", show_default=False)],
    onnx: Annotated[str, typer.Option("--onnx", metavar="FILE.onnx", help="The graph file to write.",
                                      show_default=False)],
    steps: StepsOption = None,
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset, 17 to 20. Default: 17.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace FILE.onnx if it exists.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Never download a model: use bundled or cached ones "
                                          "(also HF_HUB_OFFLINE=1).")] = False,
) -> None:
    """Write a model's restore of one tile (encoder, NCA steps, decoder) as an ONNX graph with dynamic height
    and width: RGB float in [0, 1], NCHW, sides multiples of 4 (README: Using a model outside lnca)."""
    from lnca_cli.errors import SettingsError
    from lnca_cli.export import (DEFAULT_OPSET, build_graph, check_exportable, check_target, require,
                                  write_graph)
    from lnca_cli.hub import WeightsError, load_model, registry_name

    require("onnx", "lnca export")
    check_target(onnx, overwrite)  # before the model is loaded and the graph built
    try:
        loaded = load_model(model, offline=offline)
    except WeightsError as exc:
        raise SettingsError(str(exc)) from None
    steps, opset = loaded.config.steps if steps is None else steps, opset or DEFAULT_OPSET
    check_exportable(loaded, steps, opset)
    size = write_graph(build_graph(loaded, steps, opset), onnx, overwrite)
    print(f"wrote {onnx}: {registry_name(loaded)} at {steps} NCA steps, opset {opset}, {size / 1e3:.0f} kB")
