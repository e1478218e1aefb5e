#!/usr/bin/env python3
"""Pod start through the Kubernetes CRI, Dockyard against containerd's CRI plugin, in one run:

    sudo .venv/bin/python bench/cri_pod_start.py --runs 20 [--json FILE] [--critest-benchmark]

What a kubelet does to start a one-container pod: RunPodSandbox + CreateContainer +
StartContainer (busybox ``sleep``), timed from the first call to StartContainer's
answer over each runtime's gRPC socket; StopPodSandbox + RemovePodSandbox after each
round, untimed.  Both runtimes run at once on private roots (a Dockyard daemon with
its CRI socket; Debian's containerd 1.6 with its CRI plugin, ``restrict_oom_score_adj``),
share one CNI bridge configuration (bridge + host-local + portmap, no masquerade) and
pull the stand-in busybox from one local registry through mirrors
(:mod:`dockyard.testing.crirun`).  They take turns each round, after one unmeasured
warm-up, so a noisy moment hits both.  Prints median and p90 in ms and the ratio of
Dockyard's median to containerd's.  ``--critest-benchmark`` also runs critest's own
``-benchmark`` suite (pod and container lifecycles, image pulls) against each and
prints its means.  A runtime that cannot run is ``n/a: <reason>``.  Needs root.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import percentile  # noqa: E402

BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"


def _clients(endpoint):
    import grpc

    from dockyard.cri.api import api_pb2_grpc

    channel = grpc.insecure_channel(endpoint)
    return channel, api_pb2_grpc.RuntimeServiceStub(channel), api_pb2_grpc.ImageServiceStub(channel)


def pod_start(rt, logs):
    """One RunPodSandbox + CreateContainer + StartContainer: ``(seconds, pod id)``."""
    from dockyard.cri.api import api_pb2 as pb

    name = uuid.uuid4().hex[:10]
    pod_cfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"bench-{name}", uid=name, namespace="bench", attempt=0),
        log_directory=str(logs), linux=pb.LinuxPodSandboxConfig())
    ctr_cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="sleeper", attempt=0),
                                 image=pb.ImageSpec(image=BUSYBOX), command=["sleep", "3600"],
                                 log_path=f"{name}.log", linux=pb.LinuxContainerConfig())
    t0 = time.perf_counter()
    pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_cfg), timeout=120).pod_sandbox_id
    cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=ctr_cfg,
                                                       sandbox_config=pod_cfg), timeout=120).container_id
    rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
    return time.perf_counter() - t0, pod


def remove_pod(rt, pod):
    from dockyard.cri.api import api_pb2 as pb

    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=120)
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=120)


def main(argv=None):
    from dockyard.testing import crirun
    from dockyard.testing.leaks import CGROUP_PREFIX

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--json", help="write the samples here")
    p.add_argument("--critest-benchmark", action="store_true", help="also critest -benchmark against each")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("cri_pod_start: needs root")
    from dockyard.cri.api import api_pb2 as pb

    base = Path(tempfile.mkdtemp(prefix=CGROUP_PREFIX + "bench-cri-"))
    samples, notes, crit = {}, {}, {}
    with contextlib.ExitStack() as stack:
        h = stack.enter_context(crirun.CriHarness(base))
        runtimes = {}
        for name in ("dockyard", "containerd"):
            try:
                endpoint = stack.enter_context(h.runtime(name))
                channel, rt, img = _clients(endpoint)
                stack.callback(channel.close)
                img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=BUSYBOX)), timeout=120)
                logs = base / f"logs-{name}"
                logs.mkdir()
                remove_pod(rt, pod_start(rt, logs)[1])  # warm-up: the pause image, the first netns
                runtimes[name] = (rt, logs, endpoint)
                samples[name] = []
            except Exception as exc:  # noqa: BLE001 (a runtime that cannot run is reported, not fatal)
                notes[name] = f"n/a: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
        for _ in range(args.runs):
            for name, (rt, logs, _) in runtimes.items():
                seconds, pod = pod_start(rt, logs)
                samples[name].append(seconds)
                remove_pod(rt, pod)
        if args.critest_benchmark:
            for name, (_, _, endpoint) in runtimes.items():
                res = crirun.run_critest(endpoint, base / f"critest-bench-{name}.log", benchmark=True, timeout=1800)
                crit[name] = crirun.benchmarks(res.output) or {"output": res.output[-2000:]}
    print(f"CRI pod start (RunPodSandbox + CreateContainer + StartContainer), {args.runs} runs, ms")
    med = {n: percentile(s, 50) for n, s in samples.items() if s}
    for name in ("dockyard", "containerd"):
        if name in med:
            ratio = f"{med[name] / med['containerd']:.2f}x containerd" if "containerd" in med else ""
            print(f"  {name:11s} median {med[name] * 1e3:7.1f}  p90 {percentile(samples[name], 90) * 1e3:7.1f}  {ratio}")
        else:
            print(f"  {name:11s} {notes.get(name, 'n/a')}")
    for name, table in crit.items():
        print(f"critest -benchmark, {name}: " + json.dumps(table))
    if args.json:
        Path(args.json).write_text(json.dumps({"samples": samples, "notes": notes, "critest": crit}, indent=2))
    import shutil

    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
