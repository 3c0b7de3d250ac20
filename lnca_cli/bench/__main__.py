"""A worker process: `python -m lnca_cli.bench '{"job": ..., "args": {...}}'` runs one measurement in
this fresh process and prints its result as one JSON line (what harness.run_worker reads)."""
import json
import sys

from lnca_cli.bench.nca import nca_memory_here
from lnca_cli.bench.speed import backend_here, denoise_here, opencv_here, restore_here

WORKERS = {"nca-memory": nca_memory_here, "denoise": denoise_here, "restore": restore_here, "opencv": opencv_here,
           "backend": backend_here}

job = json.loads(sys.argv[1])
print(json.dumps(WORKERS[job["job"]](**job["args"])))
