"""Print the TF_CONFIG of this task from what the cluster scheduler set, for ``--strategy multiworker``.

    export TF_CONFIG=$(python examples/tf_config.py --port 23456)

- Slurm (one task per node, ``srun``): the hosts of ``SLURM_JOB_NODELIST`` (expanded by
  ``scontrol show hostnames``), the task index ``SLURM_PROCID``.
- Kubernetes Indexed Job with a headless Service: ``--workers N --hostname-pattern
  'eeg2image-{index}.eeg2image'`` (pod ``<job>-<index>`` behind service ``<service>``), the index
  ``JOB_COMPLETION_INDEX``.
- Anything else: ``--hosts a,b,c --index I``.

Worker 0 is the chief: it writes the run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def slurm_hosts() -> list[str]:
    nodes = os.environ["SLURM_JOB_NODELIST"]
    listing = subprocess.run(["scontrol", "show", "hostnames", nodes], check=True,
                             capture_output=True, text=True).stdout
    return listing.split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=23456, help="the port every worker listens on")
    parser.add_argument("--hosts", help="comma-separated host names, worker 0 first")
    parser.add_argument("--index", type=int, help="this task's index in --hosts")
    parser.add_argument("--workers", type=int, help="Kubernetes: the Job's completions")
    parser.add_argument("--hostname-pattern", help="Kubernetes: e.g. 'eeg2image-{index}.eeg2image'")
    args = parser.parse_args()
    if args.hosts:
        hosts, index = args.hosts.split(","), args.index
    elif "SLURM_JOB_NODELIST" in os.environ:
        hosts, index = slurm_hosts(), int(os.environ["SLURM_PROCID"])
    elif "JOB_COMPLETION_INDEX" in os.environ and args.workers and args.hostname_pattern:
        hosts = [args.hostname_pattern.format(index=i) for i in range(args.workers)]
        index = int(os.environ["JOB_COMPLETION_INDEX"])
    else:
        parser.error("give --hosts and --index, or run under Slurm, or under a Kubernetes Indexed "
                     "Job with --workers and --hostname-pattern")
    if index is None or not 0 <= index < len(hosts):
        parser.error(f"task index {index} is not one of the {len(hosts)} hosts")
    print(json.dumps({"cluster": {"worker": [f"{host}:{args.port}" for host in hosts]},
                      "task": {"type": "worker", "index": index}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
