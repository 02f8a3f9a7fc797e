"""The capacity model of ``docs/capacity.md`` as a calculator: nodes, memory, Redis shards.

It measures nothing: it applies the model's formulas to the per-operation costs measured on the
development VM (the defaults; ``docs/capacity.md`` says where each comes from) and to the
workload you give. Plug in your own costs after measuring them on your machines
(``bench/redis_cost.py``, ``bench/compare.py``)::

    .venv/bin/python bench/capacity.py                              # 1,000,000 users, 100,000 msg/s
    .venv/bin/python bench/capacity.py --msgs 16667 --bcasts 833 --receivers 100
    .venv/bin/python bench/capacity.py --users 200000 --msgs 3000 --user-share 0.5 --json
    .venv/bin/python bench/capacity.py --help                       # every cost and assumption

One node is one ``wxio serve`` process (one event loop, so one core). A send's target is on
another node with probability ``1 - 1/nodes`` (no sticky routing of users to nodes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

#: (name, default, help). Costs: µs of CPU, bytes, Redis commands, per operation.
PARAMS: list[tuple[str, float, str]] = [
    # workload
    ("users", 1_000_000, "connected users, one connection each"),
    ("msgs", 100_000, "sendToOthers per second, cluster-wide"),
    ("user_share", 1.0, "share of sends to clients with a user id (kept until acked)"),
    ("bcasts", 1.0, "broadcasts (or room emits) per second"),
    ("receivers", 10_000, "receivers of each broadcast"),
    ("reconnect", 600.0, "seconds between a user's reconnections (connect + close)"),
    ("heartbeat", 25.0, "seconds between heartbeats of a connection"),
    ("inbox_ttl", 86_400.0, "the app's inbox_ttl: how long a gone client's record stays"),
    ("rho", 0.6, "target CPU use of a node's core (headroom for bursts and a lost node)"),
    ("rho_redis", 0.5, "target CPU use of a Redis shard's core"),
    ("node_mem_mb", 1024.0, "memory for one node process"),
    # node costs (µs of CPU per operation, both nodes together when two are involved)
    ("c_local_anon", 25.0, "same-node send, target without user id"),
    ("c_cross_anon", 54.0, "cross-node send, target without user id"),
    ("c_local_user", 265.0, "same-node send to a user, kept in Redis, acked"),
    ("c_cross_user", 139.0, "cross-node send to a user, kept in Redis, acked"),
    ("c_heartbeat", 49.0, "one heartbeat (ping and pong)"),
    ("c_connect", 800.0, "one connect + close with a user id"),
    ("c_delivery", 4.6, "one broadcast delivery to a local client"),
    ("c_bcast_node", 350.0, "a broadcast on each node, before its deliveries"),
    (
        "node_floor",
        0.0,
        "cores a node spends once messages flow at a light load (docs/capacity.md, Validation:"
        " about 0.3 measured at 250 messages a second per node; 0: the loaded figures)",
    ),
    ("kb_conn", 5.0, "node memory per connection, KB"),
    ("base_mb", 57.0, "node memory with no connection, MB"),
    # Redis costs per operation
    ("r_local_user", 45.7, "Redis CPU µs, same-node send to a user"),
    ("r_cross_user", 20.4, "Redis CPU µs, cross-node send to a user"),
    ("r_cross_anon", 0.9, "Redis CPU µs, cross-node send without user id"),
    ("r_connect", 95.0, "Redis CPU µs, connect + close"),
    ("r_bcast_node", 48.0, "Redis CPU µs per broadcast per node"),
    ("k_user", 10.0, "Redis commands, send to a user"),
    ("k_cross_anon", 0.01, "Redis commands, cross-node send without user id"),
    ("k_connect", 17.0, "Redis commands, connect + close"),
    ("in_local_user", 608.0, "bytes into Redis, same-node send to a user"),
    ("in_cross_user", 1340.0, "bytes into Redis, cross-node send to a user"),
    ("in_cross_anon", 337.0, "bytes into Redis, cross-node send without user id"),
    ("in_connect", 813.0, "bytes into Redis, connect + close"),
    ("in_bcast", 290.0, "bytes into Redis per broadcast"),
    ("in_bcast_node", 95.0, "bytes into Redis per broadcast per node"),
    ("out_local_user", 8.0, "bytes out of Redis, same-node send to a user"),
    ("out_cross_user", 373.0, "bytes out of Redis, cross-node send to a user"),
    ("out_cross_anon", 337.0, "bytes out of Redis, cross-node send without user id"),
    ("out_connect", 143.0, "bytes out of Redis, connect + close"),
    ("out_bcast_node", 452.0, "bytes out of Redis per broadcast per node"),
    ("mem_online", 466.0, "Redis memory per online user, bytes"),
    ("mem_gone", 200.0, "Redis memory per gone client, kept inbox_ttl, bytes"),
]


def node_demand(p: dict[str, float], nodes: int) -> dict[str, float]:
    """CPU the cluster's nodes need, in cores (µs per second / 1e6), by what needs it."""
    cross = 1 - 1 / nodes
    user = p["user_share"]
    send_user = (1 - cross) * p["c_local_user"] + cross * p["c_cross_user"]
    send_anon = (1 - cross) * p["c_local_anon"] + cross * p["c_cross_anon"]
    demand = {
        "sends": p["msgs"] * (user * send_user + (1 - user) * send_anon) / 1e6,
        "heartbeats": p["users"] / p["heartbeat"] * p["c_heartbeat"] / 1e6,
        "reconnects": p["users"] / p["reconnect"] * p["c_connect"] / 1e6,
        "broadcast deliveries": p["bcasts"] * p["receivers"] * p["c_delivery"] / 1e6,
        "broadcasts on every node": p["bcasts"] * nodes * p["c_bcast_node"] / 1e6,
    }
    # A node that handles messages at all spends at least node_floor (a light load shares
    # nothing between messages); the terms above are the loaded figures, so only what they
    # leave below the floor is added.
    floor = nodes * p["node_floor"] if p["msgs"] else 0.0
    demand["light-load floor"] = max(0.0, floor - sum(demand.values()))
    return demand


def model(p: dict[str, float]) -> dict[str, Any]:
    per_node_bcast = p["bcasts"] * p["c_bcast_node"] / 1e6  # cores every node spends on them
    if per_node_bcast >= p["rho"]:
        raise SystemExit(
            f"no cluster size fits: every node spends {per_node_bcast:.2f} of a core on "
            f"broadcasts alone (the limit is rho = {p['rho']}); every node gets every broadcast"
        )
    conn_mem = (p["node_mem_mb"] - p["base_mb"]) * 1024 / p["kb_conn"]
    nodes_mem = math.ceil(p["users"] / conn_mem)
    nodes_cpu = 1
    while sum(node_demand(p, nodes_cpu).values()) > p["rho"] * nodes_cpu:
        nodes_cpu += 1
    nodes = max(nodes_mem, nodes_cpu)
    demand = node_demand(p, nodes)
    cross = 1 - 1 / nodes
    user, m, k = p["user_share"], p["msgs"], p["users"] / p["reconnect"]
    b = p["bcasts"]
    redis_cpu = {
        "sends": m
        * (
            user * ((1 - cross) * p["r_local_user"] + cross * p["r_cross_user"])
            + (1 - user) * cross * p["r_cross_anon"]
        )
        / 1e6,
        "reconnects": k * p["r_connect"] / 1e6,
        "broadcasts": b * nodes * p["r_bcast_node"] / 1e6,
    }
    commands = (
        m * (user * p["k_user"] + (1 - user) * cross * p["k_cross_anon"])
        + k * p["k_connect"]
        + b * nodes
    )
    bytes_in = (
        m
        * (
            user * ((1 - cross) * p["in_local_user"] + cross * p["in_cross_user"])
            + (1 - user) * cross * p["in_cross_anon"]
        )
        + k * p["in_connect"]
        + b * (p["in_bcast"] + nodes * p["in_bcast_node"])
    )
    bytes_out = (
        m
        * (
            user * ((1 - cross) * p["out_local_user"] + cross * p["out_cross_user"])
            + (1 - user) * cross * p["out_cross_anon"]
        )
        + k * p["out_connect"]
        + b * nodes * p["out_bcast_node"]
    )
    redis_cores = sum(redis_cpu.values())
    conns = p["users"] / nodes
    return {
        "nodes": nodes,
        "nodes_for_cpu": nodes_cpu,
        "nodes_for_memory": nodes_mem,
        "cross_node_share": cross,
        "node_cores_needed": demand,
        "node_cores_total": sum(demand.values()),
        "connections_per_node": conns,
        "node_memory_mb": p["base_mb"] + conns * p["kb_conn"] / 1024,
        "cluster_memory_gb": nodes * (p["base_mb"] + conns * p["kb_conn"] / 1024) / 1024,
        "redis_cores_needed": redis_cpu,
        "redis_cores_total": redis_cores,
        "redis_shards": math.ceil(redis_cores / p["rho_redis"]),
        "redis_commands_per_s": commands,
        "redis_in_mb_per_s": bytes_in / 1e6,
        "redis_out_mb_per_s": bytes_out / 1e6,
        "redis_memory_gb": {
            "online users": p["users"] * p["mem_online"] / 1e9,
            "gone clients (inbox_ttl)": k * p["inbox_ttl"] * p["mem_gone"] / 1e9,
        },
    }


def report(r: dict[str, Any]) -> str:
    lines = [
        f"nodes (one process, one core each)  {r['nodes']}  "
        f"(CPU needs {r['nodes_for_cpu']}, memory {r['nodes_for_memory']})",
        f"cross-node share of sends           {r['cross_node_share']:.3f}",
        f"node cores busy in all              {r['node_cores_total']:.1f}",
    ]
    lines += [f"  {k:<33} {v:.2f}" for k, v in r["node_cores_needed"].items()]
    lines += [
        f"connections per node                {r['connections_per_node']:,.0f}",
        f"memory per node / cluster           {r['node_memory_mb']:,.0f} MB / "
        f"{r['cluster_memory_gb']:,.1f} GB",
        f"Redis cores busy                    {r['redis_cores_total']:.2f}",
    ]
    lines += [f"  {k:<33} {v:.2f}" for k, v in r["redis_cores_needed"].items()]
    lines += [
        f"Redis shards (at rho_redis)         {r['redis_shards']}",
        f"Redis commands per second           {r['redis_commands_per_s']:,.0f}",
        f"Redis network in / out              {r['redis_in_mb_per_s']:,.1f} / "
        f"{r['redis_out_mb_per_s']:,.1f} MB/s",
        "Redis memory",
    ]
    lines += [f"  {k:<33} {v:,.2f} GB" for k, v in r["redis_memory_gb"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default, text in PARAMS:
        flag = "--" + name.replace("_", "-")
        ap.add_argument(flag, type=float, default=default, help=f"{text} ({default:g})")
    ap.add_argument("--json", action="store_true", help="the result as JSON")
    args = vars(ap.parse_args(argv))
    as_json = args.pop("json")
    result = model({k: float(v) for k, v in args.items()})
    print(json.dumps(result, indent=1) if as_json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
