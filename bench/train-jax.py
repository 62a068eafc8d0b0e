#!/usr/bin/env python3
"""The training benchmark's JAX peer: one jit-compiled AdamW training step per pipeline model
shape, on the CPU, timed after warm-up. A bench-time tool, not a dependency of the package:

    python3 -m pip install jax            # CPU wheels (measured with jax/jaxlib 0.10.2)
    bun bench/train_shapes.ts | nice python3 bench/train-jax.py [--seconds 3] [--json OUT]

The shapes, losses and batches come from bench/train_shapes.ts on stdin, so the three
benchmarks (cadenza, JAX, TensorFlow.js) train the same models. The step is what cadenza's
trainer does (docs/DESIGN.md, "Training ABI"): a forward over the batch of sequences (each from
zero state; the transformer attends to at most `context` positions back), the loss (mse on the
output; bce and xent from the logits before a final sigmoid or softmax), the backward, and
AdamW (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01 on the matrices). XLA uses both
cores unless XLA_FLAGS says otherwise; cadenza's trainer uses one.
"""

import argparse
import json
import math
import statistics
import sys
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_platforms", "cpu")


def glorot(key, rows, cols):
    limit = math.sqrt(6.0 / (rows + cols))
    return jax.random.uniform(key, (rows, cols), jnp.float32, -limit, limit)


def init_layer(key, layer):
    n_in, n_out = layer["inputSize"], layer["outputSize"]
    kind = layer["kind"]
    keys = jax.random.split(key, 8)
    if kind == "dense":
        return {"W": glorot(keys[0], n_out, n_in), "b": jnp.zeros(n_out, jnp.float32)}
    if kind == "lstm":
        return {
            "Wx": glorot(keys[0], 4 * n_out, n_in),
            "Wh": glorot(keys[1], 4 * n_out, n_out),
            "b": jnp.zeros(4 * n_out, jnp.float32),
        }
    if kind == "transformer":
        d, ff = n_in, layer["ffDim"]
        p = {f"W{n}": glorot(keys[i], d, d) for i, n in enumerate("qkvo")}
        p.update({f"b{n}": jnp.zeros(d, jnp.float32) for n in "qkvo"})
        p.update(
            ln1_g=jnp.ones(d, jnp.float32),
            ln1_b=jnp.zeros(d, jnp.float32),
            ln2_g=jnp.ones(d, jnp.float32),
            ln2_b=jnp.zeros(d, jnp.float32),
            W1=glorot(keys[4], ff, d),
            b1=jnp.zeros(ff, jnp.float32),
            W2=glorot(keys[5], d, ff),
            b2=jnp.zeros(d, jnp.float32),
        )
        return p
    raise SystemExit(f"train-jax.py: layer kind {kind} is not in the benchmark's shapes")


ACT = {
    "linear": lambda x: x,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "softmax": lambda x: jax.nn.softmax(x, axis=-1),
}


def layer_norm(x, g, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * g + b


def lstm(p, x):
    """x [B, T, in] -> h [B, T, H], from zero state."""
    hidden = p["Wh"].shape[1]
    zx = x @ p["Wx"].T + p["b"]

    def cell(carry, z_t):
        h, c = carry
        z = z_t + h @ p["Wh"].T
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((x.shape[0], hidden), jnp.float32)
    _, hs = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(zx, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def transformer(p, layer, x):
    heads, context, eps = layer["heads"], layer["context"], layer["epsilon"]
    b, t, d = x.shape
    dh = d // heads
    a = layer_norm(x, p["ln1_g"], p["ln1_b"], eps)
    split = lambda y: y.reshape(b, t, heads, dh).transpose(0, 2, 1, 3)
    q = split(a @ p["Wq"].T + p["bq"])
    k = split(a @ p["Wk"].T + p["bk"])
    v = split(a @ p["Wv"].T + p["bv"])
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)
    pos = jnp.arange(t)
    allowed = (pos[None, :] <= pos[:, None]) & (pos[:, None] - pos[None, :] < context)
    scores = jnp.where(allowed, scores, -jnp.inf)
    att = (jax.nn.softmax(scores, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
    x1 = x + att @ p["Wo"].T + p["bo"]
    h = ACT[layer.get("activation", "gelu")](
        layer_norm(x1, p["ln2_g"], p["ln2_b"], eps) @ p["W1"].T + p["b1"]
    )
    return x1 + h @ p["W2"].T + p["b2"]


def forward_logits(shape, params, x):
    """The model on x [B, T, F]; the last layer's activation is left to the loss."""
    layers = shape["layers"]
    for i, (layer, p) in enumerate(zip(layers, params)):
        last = i == len(layers) - 1
        if layer["kind"] == "dense":
            z = x @ p["W"].T + p["b"]
            x = z if last else ACT[layer["activation"]](z)
        elif layer["kind"] == "lstm":
            x = lstm(p, x)
        else:
            x = transformer(p, layer, x)
    return x


def loss_fn(shape, params, x, y):
    z = forward_logits(shape, params, x)
    act = shape["layers"][-1].get("activation", "linear")
    if shape["loss"] == "xent":
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[..., None], axis=-1))
    if shape["loss"] == "bce":
        return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))
    return jnp.mean((ACT[act](z) - y) ** 2)


def make_step(shape, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, wd=0.01):
    def step(params, m, v, t, x, y):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(shape, p, x, y))(params)
        t = t + 1
        lr_m = lr / (1 - b1**t)
        m = jax.tree.map(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
        v = jax.tree.map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)

        def update(path, w, m_, v_):
            name = path[-1].key
            decay = wd * w if name.startswith("W") else 0.0
            return w - lr * (m_ * (lr_m / lr) / (jnp.sqrt(v_ / (1 - b2**t)) + eps) + decay)

        params = jax.tree_util.tree_map_with_path(update, params, m, v)
        return params, m, v, t, loss

    return jax.jit(step, donate_argnums=(0, 1, 2))


def bench(shape, seconds):
    key = jax.random.PRNGKey(0)
    keys = jax.random.split(key, len(shape["layers"]) + 2)
    params = [init_layer(k, layer) for k, layer in zip(keys, shape["layers"])]
    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    t = jnp.zeros((), jnp.float32)
    b, s = shape["batch"], shape["seqLen"]
    x = jax.random.uniform(keys[-1], (b, s, shape["inputSize"]), jnp.float32, -1, 1)
    if shape["loss"] == "xent":
        y = jax.random.randint(keys[-2], (b, s), 0, shape["outputSize"])
    else:
        y = jax.random.uniform(keys[-2], (b, s, shape["outputSize"]), jnp.float32, 0, 1)
    step = make_step(shape)
    for _ in range(5):  # compile and warm up
        params, m, v, t, loss = step(params, m, v, t, x, y)
    loss.block_until_ready()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 10:
        start = time.perf_counter()
        params, m, v, t, loss = step(params, m, v, t, x, y)
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "model": shape["name"],
        "batch": b,
        "seqLen": s,
        "step_ms": median * 1e3,
        "examples_per_s": b / median,
        "steps": len(times),
        "loss": float(loss),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--only", help="one model name")
    args = parser.parse_args()
    shapes = json.load(sys.stdin)
    results = []
    for shape in shapes:
        if args.only and shape["name"] != args.only:
            continue
        r = bench(shape, args.seconds)
        results.append(r)
        print(
            f"{r['model']:<18} batch {r['batch']:>3} x {r['seqLen']:>2}  "
            f"{r['step_ms']:8.2f} ms/step  {r['examples_per_s']:9.1f} examples/s",
            file=sys.stderr,
        )
    out = {"peer": "jax", "version": jax.__version__, "device": str(jax.devices()[0]),
           "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
