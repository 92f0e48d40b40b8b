#!/usr/bin/python3
"""An independent check of torchae's tie-aware mAP: the exported model's hash(x) from Python's
torch.jit.load, Hamming distances by matrix products, and each query's average precision
computed by numpy on a ranking whose ties are broken in random orders (the mean over such
orders is what torchae computes in closed form).

    scripts/reference_map.py MODEL.pt [QUERIES [ORDERS]]   (default 10000 queries, 1 order)

Compare its map_random_tie_orders with `torchae eval --retrieval`'s retrieval.methods.model.map
of the run MODEL.pt was exported from. Needs Debian's python3-torch and dataset-fashion-mnist.
"""
import gzip
import json
import sys

import numpy as np
import torch


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    model = torch.jit.load(sys.argv[1]).eval()
    queries = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    orders = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    d = "/usr/share/datasets/fashion-mnist/"
    x_db = torch.tensor(idx(d + "train-images-idx3-ubyte.gz")).float().div(255).unsqueeze(1)
    y_db = idx(d + "train-labels-idx1-ubyte.gz").astype(np.int64)
    x_q = torch.tensor(idx(d + "t10k-images-idx3-ubyte.gz")).float().div(255).unsqueeze(1)
    y_q = idx(d + "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    with torch.no_grad():
        b_db = torch.cat([model.hash(x_db[i:i + 5000]) for i in range(0, len(x_db), 5000)]).float()
        b_q = torch.cat([model.hash(x_q[i:i + 5000]) for i in range(0, len(x_q), 5000)]).float()
    rng = np.random.default_rng(0)
    aps = []
    for q in range(queries):
        distance = (b_q[q] * (1 - b_db) + (1 - b_q[q]) * b_db).sum(1).numpy()
        relevant = y_db == y_q[q]
        values = []
        for _ in range(orders):
            order = np.lexsort((rng.random(len(distance)), distance))
            r = relevant[order]
            hits = np.cumsum(r)
            values.append((hits[r] / (np.nonzero(r)[0] + 1)).mean())
        aps.append(np.mean(values))
    print(json.dumps({"queries": queries, "orders": orders, "map_random_tie_orders": float(np.mean(aps))}))


if __name__ == "__main__":
    main()
