//! Messages for the mistakes newcomers make. Each test names the mistake and checks that
//! the diagnostic says what is wrong, points at the right text, and suggests the fix.
//! When a user finds a message confusing, add the case here.

use anneal_compiler::compile;
use anneal_compiler::diagnostic::Diagnostic;

fn errors(src: &str) -> Vec<Diagnostic> {
    let c = compile("recipe.anneal", src);
    c.diagnostics.into_iter().filter(|d| d.is_error()).collect()
}

fn only_error(src: &str) -> (Diagnostic, String) {
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    let d = errs.into_iter().next().unwrap();
    let text = &src[d.span.start..d.span.end];
    (d.clone(), text.to_string())
}

#[test]
fn typo_in_optimizer_name_suggests_the_right_one() {
    let (d, at) =
        only_error("import std.optax.*\nrecipe r {\n  update = adamw_(learning_rate: 1e-3)\n}\n");
    assert_eq!(d.code, "E0102");
    assert_eq!(at, "adamw_");
    assert!(
        d.help.as_deref().unwrap().contains("did you mean `adamw`?"),
        "{d:?}"
    );
}

#[test]
fn torch_name_in_an_optax_recipe_points_to_std_torch() {
    let (d, _) = only_error("import std.optax.*\nrecipe r {\n  update = AdamW(lr: 1e-3)\n}\n");
    assert!(
        d.help
            .as_deref()
            .unwrap()
            .contains("import std.torch.{AdamW}"),
        "{d:?}"
    );
}

#[test]
fn b1_of_one_is_out_of_range_and_names_the_range() {
    let (d, at) = only_error(
        "import std.optax.*\nrecipe r {\n  update = adam(learning_rate: 1e-3, b1: 1.0)\n}\n",
    );
    assert_eq!(d.code, "E0121");
    assert_eq!(at, "1.0");
    assert!(d.message.contains("[0, 1)"), "{}", d.message);
}

#[test]
fn b1_out_of_range_through_a_chain_definition() {
    // adamw passes b1 on to scale_by_adam; the range of adamw's own b1 catches it first.
    let (d, _) = only_error(
        "import std.optax.*\nrecipe r {\n  update = adamw(learning_rate: 1e-3, b1: 1.5)\n}\n",
    );
    assert!(
        d.message
            .contains("`b1` of `adamw` must be in [0, 1), but is 1.5"),
        "{}",
        d.message
    );
}

#[test]
fn torch_betas_are_checked_element_by_element() {
    let (d, _) = only_error(
        "import std.torch.*\nrecipe r {\n  update = Adam(lr: 1e-3, betas: [0.9, 1.2])\n}\n",
    );
    assert_eq!(d.code, "E0121");
    assert!(d.message.contains("1.2"), "{}", d.message);
}

#[test]
fn per_element_value_as_learning_rate() {
    let (d, at) =
        only_error("import std.optax.*\nrecipe r {\n  update = sgd(learning_rate: param)\n}\n");
    assert_eq!(d.code, "E0130");
    assert_eq!(at, "param");
    assert!(d.message.contains("per-element"), "{}", d.message);
}

#[test]
fn per_element_value_into_a_per_tensor_state() {
    let (d, _) = only_error("transform t() {\n  state scale: tensor = 1\n  scale = abs(grad)\n  grad = grad * scale\n}\n");
    assert_eq!(d.code, "E0130");
    assert!(
        d.help.as_deref().unwrap().contains("norm(x, tensor)"),
        "{d:?}"
    );
}

#[test]
fn missing_import_names_the_module_and_the_line_to_add() {
    let (d, _) = only_error("recipe r {\n  update = sgd(learning_rate: 0.1)\n}\n");
    assert_eq!(
        d.help.as_deref(),
        Some(
            "`sgd` is defined in `std.optax`: add `import std.optax.{sgd}` at the top of the file"
        )
    );
}

#[test]
fn optax_keyword_on_a_torch_optimizer() {
    let (d, _) =
        only_error("import std.torch.*\nrecipe r {\n  update = SGD(learning_rate: 0.1)\n}\n");
    assert_eq!(d.code, "E0110");
    assert!(d.help.as_deref().unwrap().contains("`lr`"), "{d:?}");
}

#[test]
fn float_where_steps_are_counted() {
    let (d, _) = only_error(
        "import std.torch.*\nrecipe r {\n  schedule lr = StepLR(base_lr: 0.1, step_size: 2.5)\n}\n",
    );
    assert_eq!(d.code, "E0120");
    assert!(d.help.as_deref().unwrap().contains("whole number"), "{d:?}");
}

#[test]
fn clipping_after_the_optimizer() {
    let (d, at) = only_error("import std.torch.*\nrecipe r {\n  update = AdamW(lr: 1e-3) |> clip_grad_norm_(max_norm: 1.0)\n}\n");
    assert_eq!(d.code, "E0142");
    assert!(at.starts_with("clip_grad_norm_"));
}

#[test]
fn five_mistakes_give_five_diagnostics_in_one_run() {
    let src = "import std.optax.{adam, clip_by_global_norm}\n\
               recipe broken {\n\
                 schedule lr = cosine_decay_schedule(init_value: 1e-3, decay_steps: 1000)\n\
                 update = clip_by_global_norm(max_norm: 1.0)\n\
                       |> adma(learning_rate: lr)\n\
                       |> adam(learning_rate: lr, b1: 1.0, beta2: 0.99)\n\
               }\n\
               transform my_clip(limit: real > 0) {\n\
                 state s: scalar = 0\n\
                 s = grad * 2\n\
                 grad = grad * min(limit / s, 1)\n\
               }\n";
    let errs = errors(src);
    let codes: Vec<&str> = errs.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        ["E0102", "E0102", "E0121", "E0110", "E0130"],
        "{errs:#?}"
    );
    assert!(errs
        .iter()
        .all(|d| d.help.is_some() && d.span.end > d.span.start));
}

#[test]
fn one_cycle_without_a_length_names_torchs_rule() {
    let (d, at) = only_error(
        "import std.torch.*\nrecipe r {\n  schedule lr = OneCycleLR(max_lr: 0.1, epochs: 3)\n  update = SGD(lr: lr)\n}\n",
    );
    assert_eq!(d.code, "E0114");
    assert_eq!(at, "OneCycleLR");
    assert!(
        d.message.contains("epochs and steps_per_epoch"),
        "{}",
        d.message
    );
}

#[test]
fn one_cycle_given_epochs_and_steps_per_epoch_compiles() {
    assert!(errors(
        "import std.torch.*\nrecipe r {\n  schedule lr = OneCycleLR(max_lr: 0.1, epochs: 3, steps_per_epoch: 5)\n  update = SGD(lr: lr)\n}\n"
    )
    .is_empty());
}

#[test]
fn negative_scale_in_a_map_is_out_of_range() {
    let (d, at) = only_error(
        "import std.optax.*\nrecipe r {\n  schedule lr = piecewise_interpolate_schedule(interpolate_type: \"linear\", init_value: 0.1, boundaries_and_scales: {4: -0.5})\n  update = sgd(learning_rate: lr)\n}\n",
    );
    assert_eq!(d.code, "E0121");
    assert_eq!(at, "{4: -0.5}");
    assert!(d.message.contains("-0.5"), "{}", d.message);
}

/// `ITEM` in a recipe that otherwise compiles, as its only error.
fn foreign_item(item: &str) -> (Diagnostic, String) {
    only_error(&format!(
        "import std.torch.{{AdamW}}\nrecipe r {{\n  {item}\n  update = AdamW(lr: 1e-3)\n}}\n"
    ))
}

#[test]
fn settings_of_other_tools_name_the_anneal_spelling() {
    for (item, wanted) in [
        ("accumulate 8", "MultiSteps(every_k_schedule: 8)"),
        (
            "gradient_accumulation_steps: 4",
            "MultiSteps(every_k_schedule: 4)",
        ),
        ("clip 1.0", "clip_grad_norm_(max_norm: 1.0)"),
        ("max_grad_norm = 0.5", "clip_grad_norm_(max_norm: 0.5)"),
        ("warmup 500", "warmup_steps: 500"),
        ("fp16", "precision { params: f16"),
        ("bf16 = true", "precision { params: bf16"),
        ("lr = 3e-4", "AdamW(lr: 3e-4)"),
        ("weight_decay 0.1", "weight_decay: 0.1"),
        ("epochs 3", "steps 10_000"),
        ("batch_size: 64", "batch: 64"),
        ("seed 7", "--seed"),
    ] {
        let (d, at) = foreign_item(item);
        assert_eq!(d.code, "E0169", "{item}");
        assert_eq!(at, item, "{item}: the whole line is marked");
        assert!(
            d.message.contains("is not a recipe item"),
            "{item}: {}",
            d.message
        );
        let help = d.help.as_deref().unwrap_or_default();
        assert!(help.contains(wanted), "{item}: {help}");
    }
}

#[test]
fn a_misspelt_recipe_item_suggests_the_item() {
    let (d, at) = foreign_item("modle = mlp(layers: [4, 2])");
    assert_eq!(d.code, "E0169");
    assert_eq!(at, "modle = mlp(layers: [4, 2])");
    assert!(d
        .help
        .as_deref()
        .unwrap_or_default()
        .contains("did you mean `model`?"));
}

#[test]
fn foreign_items_do_not_hide_the_other_mistakes() {
    // The lines after `accumulate 8` are still checked: the typo in the chain is reported.
    let errs = errors(
        "import std.torch.{AdamW}\nrecipe r {\n  accumulate 8\n  update = AdamW(lr: 1e-3, betas: [0.9, 1.5])\n  fp16\n}\n",
    );
    let codes: Vec<&str> = errs.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0169", "E0121", "E0169"]);
}

#[test]
fn a_single_line_recipe_ends_the_foreign_item_at_its_brace() {
    let (d, at) =
        only_error("import std.torch.{AdamW}\nrecipe r { update = AdamW(lr: 1e-3) fp16 }\n");
    assert_eq!(d.code, "E0169");
    assert_eq!(at, "fp16");
}

#[test]
fn an_evaluation_view_cannot_read_the_step_s_gradient() {
    let (d, at) = only_error(
        "import std.optax.{sgd}\ntransform avg() {\n  state z = param\n  z = z + grad\n  eval param = param - grad\n}\nrecipe r { update = avg() |> sgd(learning_rate: 0.1) }\n",
    );
    assert_eq!(d.code, "E0147");
    assert_eq!(at, "grad");
    assert!(d.message.contains("between steps"), "{}", d.message);
}

#[test]
fn a_scheduled_beta_is_checked_over_the_run_and_names_the_step() {
    let src = |steps: u32| {
        format!(
            "import std.optax.*\nrecipe r {{\n  steps {steps}\n  update = adamw(learning_rate: 1e-3, \
             b1: linear_schedule(init_value: 0.5, end_value: 1.2, transition_steps: 50), \
             weight_decay: cosine_decay_schedule(init_value: 0.1, decay_steps: 60))\n}}\n"
        )
    };
    // 0.5 + 0.7·k/50 reaches 1 at count 36 (step 37); a 36-step run never gets there.
    assert!(errors(&src(36)).is_empty(), "{:#?}", errors(&src(36)));
    let (d, at) = only_error(&src(37));
    assert_eq!(d.code, "E0121");
    // At the argument the recipe wrote, under the name it called.
    assert!(at.starts_with("linear_schedule(init_value: 0.5"), "{at}");
    assert!(
        d.message
            .contains("`b1` of `adamw` must be in [0, 1), but its schedule is 1.004 at step 37"),
        "{}",
        d.message
    );
}

#[test]
fn a_schedules_own_parameters_take_numbers_not_schedules() {
    let (d, _) = only_error(
        "import std.optax.*\nrecipe r {\n  update = sgd(learning_rate: linear_schedule(init_value: \
         cosine_decay_schedule(init_value: 1, decay_steps: 10), end_value: 0, transition_steps: 10))\n}\n",
    );
    assert_eq!(d.code, "E0120");
    assert!(
        d.help
            .as_deref()
            .unwrap_or("")
            .contains("a schedule's parameters are fixed numbers"),
        "{d:?}"
    );
}

#[test]
fn a_wrapper_refuses_an_optimizer_that_assigns_param_itself() {
    // torch's AdamW writes `param`, so cautious's mask after `run` would see no update.
    let (d, _) = only_error(
        "import std.research.{cautious}\nimport std.torch.{AdamW}\nrecipe r {\n  update = cautious(optimizer: AdamW(lr: 1e-3))\n}\n",
    );
    assert_eq!(d.code, "E0148");
    assert!(
        d.message
            .contains("`cautious` cannot wrap these stages: `Adam` assigns `param`"),
        "{}",
        d.message
    );
    // mars runs its optimizer last, so the same optimizer is fine there.
    assert!(errors(
        "import std.research.{mars}\nimport std.torch.{AdamW}\nrecipe r {\n  update = mars(optimizer: AdamW(lr: 1e-3))\n}\n"
    )
    .is_empty());
}

#[test]
fn run_names_a_chain_parameter() {
    let (d, at) = only_error(
        "transform w(optimizer: chain, scale: real = 1) {\n  run scale\n  grad = grad * scale\n}\n",
    );
    assert_eq!(d.code, "E0120");
    assert_eq!(at, "scale");
    assert_eq!(d.help.as_deref(), Some("write `run optimizer`"));
}
