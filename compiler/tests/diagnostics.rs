//! Snapshot tests of rendered diagnostics: one small recipe per mistake, its full ariadne
//! report (no colour) in `tests/snapshots/`. Review changes with `cargo insta review`, or
//! rerun with `INSTA_UPDATE=always` and read the diff.

use anneal_compiler::{compile, diagnostic};

fn render(src: &str) -> String {
    let c = compile("recipe.anneal", src);
    assert!(
        !c.diagnostics.is_empty(),
        "expected a diagnostic for:\n{src}"
    );
    diagnostic::render(&c.diagnostics, &c.sources, false)
}

macro_rules! case {
    ($name:ident, $src:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), render($src));
        }
    };
}

case!(
    syntax_error_unclosed_call,
    "import std.optax.*\nrecipe r {\n  update = adam(learning_rate: 0.1\n}\n"
);
case!(
    syntax_error_recovers_per_item,
    "transform t(x: real) {\n  grad = grad *\n}\n\ntransform u() {\n  grad = grad + \n}\n"
);
case!(unknown_module, "import std.optx.{adam}\n");
case!(unknown_import_name, "import std.optax.{adamm}\n");
case!(
    unknown_name_typo,
    "import std.optax.*\nrecipe r {\n  update = adma(learning_rate: 0.1)\n}\n"
);
case!(
    missing_import,
    "recipe r {\n  update = adam(learning_rate: 0.1)\n}\n"
);
case!(
    duplicate_definition,
    "transform t() {\n  grad = grad\n}\ntransform t() {\n  grad = -grad\n}\n"
);
case!(
    duplicate_parameter,
    "transform t(a: real, a: real) {\n  grad = a * grad\n}\n"
);
case!(
    let_redefined,
    "transform t() {\n  let x = grad\n  let x = 2 * grad\n  grad = x\n}\n"
);
case!(
    unknown_keyword,
    "import std.optax.*\nrecipe r {\n  update = adam(learning_rate: 0.1, beta1: 0.9)\n}\n"
);
case!(
    missing_argument,
    "import std.optax.*\nrecipe r {\n  update = adam(b1: 0.9)\n}\n"
);
case!(
    argument_given_twice,
    "import std.optax.*\nrecipe r {\n  update = adam(learning_rate: 0.1, learning_rate: 0.2)\n}\n"
);
case!(
    positional_argument,
    "import std.optax.*\nrecipe r {\n  update = adam(0.1)\n}\n"
);
case!(int_expected, "import std.optax.*\nrecipe r {\n  schedule lr = cosine_decay_schedule(init_value: 0.1, decay_steps: 1000.5)\n}\n");
case!(
    bool_in_arithmetic,
    "transform t(flag: bool) {\n  grad = flag * grad\n}\n"
);
case!(
    out_of_range,
    "import std.optax.*\nrecipe r {\n  update = adam(learning_rate: 1e-3, b1: 1.0)\n}\n"
);
case!(
    per_element_learning_rate,
    "import std.optax.*\nrecipe r {\n  update = sgd(learning_rate: grad)\n}\n"
);
case!(
    per_element_in_scalar_state,
    "transform t() {\n  state s: scalar = 0\n  s = grad * grad\n  grad = grad / s\n}\n"
);
case!(
    reduction_without_scope,
    "transform t() {\n  grad = grad / norm(grad)\n}\n"
);
case!(
    reduction_in_schedule,
    "schedule s(x: real) = norm(x, global)\n"
);
case!(
    assign_to_let,
    "transform t() {\n  let x = grad\n  x = 2 * x\n  grad = x\n}\n"
);
case!(
    assign_to_hyperparameter,
    "transform t(lr: real) {\n  lr = 2 * lr\n  grad = lr * grad\n}\n"
);
case!(
    transform_assigns_param,
    "transform t(lr: real) {\n  param -= lr * grad\n}\n"
);
case!(stage_after_optimizer, "import std.torch.*\nrecipe r {\n  update = SGD(lr: 0.1) |> clip_grad_norm_(max_norm: 1.0)\n}\n");
case!(expression_statement, "transform t() {\n  grad * 2\n}\n");
case!(schedule_as_stage, "import std.optax.*\nrecipe r {\n  update = linear_schedule(init_value: 1, end_value: 0, transition_steps: 10)\n}\n");
case!(
    builtin_arity,
    "transform t() {\n  grad = clamp(grad, 1)\n}\n"
);
case!(duplicate_steps, "recipe r {\n  steps 10\n  steps 20\n}\n");
case!(unknown_group, "import std.optax.*\nrecipe r {\n  groups {\n    decay = \"*.weight\"\n    other = rest\n  }\n  update = adamw(learning_rate: 1e-3, weight_decay: {decya: 0.1, other: 0.0})\n}\n");
case!(missing_group_value, "import std.optax.*\nrecipe r {\n  groups {\n    decay = \"*.weight\"\n    other = rest\n  }\n  update = adamw(learning_rate: 1e-3, weight_decay: {decay: 0.1})\n}\n");
case!(
    two_rest_groups,
    "recipe r {\n  groups {\n    a = rest\n    b = rest\n  }\n}\n"
);
case!(steps_not_positive, "recipe r {\n  steps 0\n}\n");
case!(
    index_non_list,
    "transform t(x: real) {\n  grad = x[0] * grad\n}\n"
);
case!(
    unused_let,
    "transform t() {\n  let unused = grad * 2\n  grad = grad\n}\n"
);
case!(unused_schedule, "import std.optax.*\nrecipe r {\n  schedule lr = constant_schedule(value: 0.1)\n  schedule other = constant_schedule(value: 0.2)\n  update = sgd(learning_rate: lr)\n}\n");
case!(
    range_on_bool,
    "transform t(flag: bool in [0, 1]) {\n  grad = if flag then grad else -grad\n}\n"
);
case!(recursive_chain, "optimizer a(x: real) = b(x: x)\noptimizer b(x: real) = a(x: x)\nrecipe r {\n  update = a(x: 1.0)\n}\n");
case!(
    count_in_transform,
    "transform t() {\n  grad = grad / (count + 1)\n}\n"
);
case!(
    if_condition_not_bool,
    "transform t() {\n  grad = if grad then grad else 0\n}\n"
);
case!(string_not_a_choice, "import std.torch.*\nrecipe r {\n  schedule lr = CyclicLR(base_lr: 0.01, max_lr: 0.1, mode: \"triangle\")\n}\n");
case!(
    string_compared_with_unknown_choice,
    "schedule s(mode: str in {\"cos\", \"linear\"}) = if mode == \"cosine\" then 1 else 0\n"
);
case!(
    skip_condition_per_element,
    "transform t() {\n  skip if grad > 0\n  grad = grad\n}\n"
);
case!(per_group_value_for_step_decision, "import std.optax.*\nrecipe r {\n  groups {\n    a = \"*.bias\"\n    b = rest\n  }\n  update = MultiSteps(every_k_schedule: {a: 2, b: 4}) |> sgd(learning_rate: 0.1)\n}\n");
case!(
    bad_model_item,
    "recipe r {\n  model = mlp(layers: [64, 0.5, 10], activation: \"tanh\")\n}\n"
);
case!(
    unknown_data_source,
    "recipe r {\n  data = parquet(file: \"x\")\n}\n"
);
case!(
    curriculum_pace_outside_unit_interval,
    "recipe r {\n  curriculum {\n    pace = linear(start: 1.5, total_steps: 100)\n  }\n}\n"
);
case!(
    curriculum_negative_alpha,
    "recipe r {\n  curriculum {\n    sampling = hard_mining(alpha: -1, floor: 0.1)\n  }\n}\n"
);
case!(
    curriculum_top_fraction_outside,
    "recipe r {\n  curriculum {\n    sampling = ohem(top: 0)\n  }\n}\n"
);
case!(
    curriculum_on_model_without_examples,
    "recipe r {\n  model = rosenbrock()\n  curriculum {\n    difficulty = loss\n    sampling = self_paced(lambda: 1.0)\n  }\n}\n"
);
case!(
    curriculum_unknown_pace_typo,
    "recipe r {\n  curriculum {\n    pace = fixed_lienar(min_difficulty: 8, max_difficulty: 64, total_curriculum_step: 100)\n  }\n}\n"
);
case!(
    curriculum_difficulty_unknown_function,
    "recipe r {\n  curriculum {\n    difficulty = 0.5 * loss + entropy(confidence)\n  }\n}\n"
);
case!(
    curriculum_difficulty_function_arity,
    "recipe r {\n  curriculum {\n    difficulty = log(loss, 2)\n  }\n}\n"
);
case!(
    curriculum_phases_out_of_order,
    "recipe r {\n  curriculum after 100 {\n    sampling = uniform\n  }\n  curriculum after 50 {\n    sampling = uniform\n  }\n}\n"
);
case!(
    chain_argument_is_not_a_call,
    "import std.optax.*\nrecipe r {\n  update = sam(optimizer: 0.1, adv_optimizer: normalize() |> sgd(learning_rate: 0.05))\n}\n"
);
case!(
    chain_argument_stage_after_an_optimizer,
    "import std.torch.{SGD}\nimport std.optax.{sam, normalize, sgd}\nrecipe r {\n  update = sam(optimizer: SGD(lr: 0.1) |> normalize(), adv_optimizer: sgd(learning_rate: 0.05))\n}\n"
);
case!(
    parallel_unknown_setting,
    "import std.optax.{adamw}\nrecipe r {\n  update = adamw(learning_rate: 1e-3)\n  parallel { data: 8, zero_stage: 1 }\n}\n"
);
case!(
    parallel_degrees_do_not_fill_the_world,
    "import std.optax.{adamw}\nrecipe r {\n  update = adamw(learning_rate: 1e-3)\n  parallel { data: 4, tensor: 2, pipeline: 4, world: 64 }\n}\n"
);
case!(
    parallel_zero3_with_pipeline,
    "import std.optax.{adamw}\nrecipe r {\n  update = adamw(learning_rate: 1e-3)\n  parallel { data: 8, pipeline: 4, zero: 3, micro_batches: 16 }\n}\n"
);
case!(
    parallel_layers_do_not_split_into_stages,
    "import std.optax.{adamw}\nrecipe r {\n  model = mlp(layers: [64, 128, 128, 10])\n  update = adamw(learning_rate: 1e-3)\n  parallel { pipeline: 2, micro_batches: 8 }\n}\n"
);
case!(
    parallel_batch_arithmetic,
    "import std.optax.{adamw}\nrecipe r {\n  update = adamw(learning_rate: 1e-3)\n  parallel { data: 8, micro_batch: 4, micro_batches: 2, global_batch: 128 }\n}\n"
);
case!(
    parallel_fewer_micro_batches_than_stages,
    "import std.optax.{adamw}\nrecipe r {\n  update = adamw(learning_rate: 1e-3)\n  parallel { data: 2, pipeline: 4, micro_batches: 2 }\n}\n"
);
case!(
    parallel_setting_out_of_range,
    "import std.optax.{adamw}\nrecipe r {\n  update = adamw(learning_rate: 1e-3)\n  parallel { data: 4294967296, tensor: 4294967296, pipeline: 2 }\n}\n"
);
case!(
    requirement_broken_by_the_arguments,
    "import std.optax.{sgd}\nschedule warm(total: int > 0 = none, epochs: int > 0 = none)\n  requires total > 0 or epochs > 0 else \"give total or epochs\" = 0.1\nrecipe r {\n  schedule lr = warm()\n  update = sgd(learning_rate: lr)\n}\n"
);
case!(
    requirement_that_is_not_a_condition,
    "schedule warm(total: int > 0 = 10)\n  requires total + 1 else \"never\" = 0.1\n"
);
case!(
    settings_from_other_tools_as_recipe_items,
    "import std.torch.{AdamW}\nrecipe r {\n  accumulate 8\n  clip = 1.0\n  warmup: 500\n  fp16\n  update = AdamW(lr: 1e-3)\n}\n"
);
case!(
    misspelt_recipe_item,
    "import std.torch.{AdamW}\nrecipe r {\n  updat = AdamW(lr: 1e-3)\n}\n"
);
case!(
    recipe_item_broken_at_its_first_word,
    "import std.torch.{AdamW}\nrecipe r {\n  model: mlp(layers: [4, 2])\n  update = AdamW(lr: 1e-3)\n}\n"
);
case!(
    scheduled_beta_leaves_its_range,
    "import std.optax.{adam, linear_schedule}\nrecipe r {\n  steps 100\n  update = adam(learning_rate: 1e-3, b1: linear_schedule(init_value: 0.5, end_value: 1.5, transition_steps: 100))\n}\n"
);
case!(
    matrix_meets_per_element_value,
    "transform t() {\n  let m = matrix(grad) * grad\n  grad = elements(m)\n}\n"
);
case!(
    repeat_without_a_matrix_update,
    "transform t() {\n  let x = matrix(grad)\n  repeat 3 {\n    let a = x @ x\n  }\n  grad = elements(x)\n}\n"
);
case!(
    per_element_norm_of_a_matrix,
    "transform t() {\n  let G = matrix(grad)\n  grad = grad / norm(G, tensor)\n}\n"
);
case!(
    trace_of_a_matrix,
    "transform t() {\n  let G = matrix(grad)\n  grad = grad / trace(G @ transpose(G))\n}\n"
);
case!(
    matrix_shapes_that_hold_only_for_square_tensors,
    "optimizer o(lr: real = 0.1) {\n  state L: matrix(rows, rows) = eye(rows())\n  let G = matrix(grad)\n  L = L + transpose(G) @ G\n  let X = G @ G\n  repeat 2 {\n    X = X @ transpose(G)\n  }\n  param -= lr * elements(transpose(X))\n}\n"
);
case!(
    function_reads_grad,
    "function scaled(x: real) {\n  x * grad\n}\ntransform t() {\n  grad = scaled(grad)\n}\n"
);
case!(
    function_as_a_stage,
    "function scaled(x: real) {\n  2 * x\n}\nrecipe r {\n  update = scaled(x: 1)\n}\n"
);
