"""lnca: restore photographs with Latent Neural Cellular Automata.

    import lnca_cli
    model = lnca_cli.load_model("denoise")
    restored = lnca_cli.restore(image, model)            # torch (C, H, W) in [0, 1] or numpy array
    lnca_cli.restore_file(lnca_cli.Job("in.jpg", "out.jpg"), model, lnca_cli.RestoreSettings())
"""
__version__ = "0.1.0"

from lnca_cli.api import FileResult, Job, RestoreSettings, Stop, restore_file, restore_files  # noqa: E402
from lnca_cli.engine import restore  # noqa: E402
from lnca_cli.hub import load_model  # noqa: E402

__all__ = ["FileResult", "Job", "RestoreSettings", "Stop", "__version__", "load_model", "restore", "restore_file",
           "restore_files"]
