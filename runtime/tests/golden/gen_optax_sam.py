"""Golden numbers for optax.contrib.sam beyond the shared case: other sync periods,
reset_state=False, stateful inner chains, clipping inside a chain. Made with optax 0.2.8 /
jax 0.10.2 (CPU, float32) from the shared case's parameters and quadratic loss:

    python3 gen_optax_sam.py ../../../../shared/conformance/cases/optax/optax__contrib.sam__sgd.json .
"""
import json, copy, sys
import jax, jax.numpy as jnp, optax
base = json.load(open(sys.argv[1]))
def make(entry):
    name = entry["fn"]; args = entry.get("args", {})
    if name == "contrib.normalize": return optax.contrib.normalize()
    if name == "contrib.sam":
        return optax.contrib.sam(optax.chain(*[make(e) for e in entry["optimizer"]]),
                                 optax.chain(*[make(e) for e in entry["adv_optimizer"]]), **args)
    return getattr(optax, name)(**args)
variants = {
  "sync3_adam_momentum": {"fn": "contrib.sam", "args": {"sync_period": 3},
      "optimizer": [{"fn": "adam", "args": {"learning_rate": 0.02}}],
      "adv_optimizer": [{"fn": "contrib.normalize", "args": {}}, {"fn": "sgd", "args": {"learning_rate": 0.03, "momentum": 0.9}}]},
  "sync3_noreset": {"fn": "contrib.sam", "args": {"sync_period": 3, "reset_state": False},
      "optimizer": [{"fn": "sgd", "args": {"learning_rate": 0.05, "momentum": 0.5}}],
      "adv_optimizer": [{"fn": "contrib.normalize", "args": {}}, {"fn": "sgd", "args": {"learning_rate": 0.03, "momentum": 0.9}}]},
  "sync1": {"fn": "contrib.sam", "args": {"sync_period": 1},
      "optimizer": [{"fn": "adam", "args": {"learning_rate": 0.02}}],
      "adv_optimizer": [{"fn": "contrib.normalize", "args": {}}, {"fn": "sgd", "args": {"learning_rate": 0.03}}]},
  "clip_in_chain": {"fn": "contrib.sam", "args": {},
      "optimizer": [{"fn": "clip_by_global_norm", "args": {"max_norm": 0.5}}, {"fn": "adamw", "args": {"learning_rate": 0.01, "weight_decay": 0.1}}],
      "adv_optimizer": [{"fn": "contrib.normalize", "args": {}}, {"fn": "sgd", "args": {"learning_rate": 0.05}}]},
}
for name, entry in variants.items():
    case = copy.deepcopy(base)
    case["name"] = "optax/contrib.sam/" + name
    case["update"] = [entry]
    case["steps"] = 13
    case["note"] = "made by gen_optax_sam.py (this folder) with optax itself: " + name
    tx = make(entry)
    params = {k: jnp.array(v["data"], dtype=jnp.float32).reshape(v["shape"]) for k, v in case["params"].items()}
    a = {k: jnp.array(v, dtype=jnp.float32).reshape(params[k].shape) for k, v in case["loss"]["args"]["a"].items()}
    c = {k: jnp.array(v, dtype=jnp.float32).reshape(params[k].shape) for k, v in case["loss"]["args"]["c"].items()}
    state = tx.init(params)
    exp = []
    for k in range(case["steps"]):
        g = {n: a[n] * (params[n] - c[n]) for n in params}
        upd, state = tx.update(g, state, params)
        params = optax.apply_updates(params, upd)
        exp.append({n: [float(x) for x in params[n].reshape(-1)] for n in params})
    case["expected"] = exp
    json.dump(case, open(f"{sys.argv[2]}/optax__contrib.sam__{name}.json", "w"))
print("ok")
