"""`lnca bench`: the paper's claims measured side by side, and lnca against the tools users pick instead.

Six benchmarks, each a function that returns a JSON-ready dict (the CLI's bench_report.py turns
it into tables and plots):

- nca.py, bench_nca: the latent NCA against the same NAFCA rule run on pixels: peak memory and
  latency per input size, inference and one training step, and the largest input each handles
  within a memory budget.
- speed.py, bench_speed: the whole `lnca denoise` command on 1, 12 and 50 megapixel photographs,
  and side by side on each: the restore alone with the fast rule and the previous one, and
  OpenCV's NL-means; and, asked, through each back end (torch, onnxruntime, openvino).
- train.py, bench_train: training iterations per second, fast rule against the previous one.
- quality.py, bench_quality: PSNR, SSIM and seconds per megapixel of lnca and its peers (peers.py).
- steps.py, bench_steps: PSNR and time against the number of NCA steps.
- distributed.py, bench_ray: images per second of the local engine and the Ray engine on one folder,
  and Ray's fixed costs (needs the [ray] extra).

harness.py holds what they share (the machine, threads, peak memory, timing, worker processes,
bench_all) and says how time and memory are measured; nca.py says what is particular to it.

The restore path never imports this package.
"""
from lnca_cli.bench.distributed import RayBenchSettings, bench_ray
from lnca_cli.bench.harness import bench_all, set_threads
from lnca_cli.bench.nca import NCASettings, bench_nca, find_max_side, nca_memory
from lnca_cli.bench.peers import PEERS
from lnca_cli.bench.quality import (QUALITY_DEGRADATIONS, bench_quality, choose_peers, degrade_image, load_trained,
                                    task_of)
from lnca_cli.bench.speed import (SPEED_MEGAPIXELS, backend_variants, bench_speed, check_speed_settings, make_photo,
                                  speed_variants)
from lnca_cli.bench.steps import STEP_COUNTS, bench_steps, check_step_counts
from lnca_cli.bench.train import TrainSettings, bench_train

__all__ = ["NCASettings", "PEERS", "QUALITY_DEGRADATIONS", "RayBenchSettings", "SPEED_MEGAPIXELS", "STEP_COUNTS",
           "TrainSettings", "backend_variants", "bench_all", "bench_nca", "bench_quality", "bench_ray", "bench_speed",
           "bench_steps", "bench_train",
           "check_speed_settings", "check_step_counts", "choose_peers", "degrade_image", "find_max_side",
           "load_trained", "make_photo", "nca_memory", "set_threads", "speed_variants", "task_of"]
