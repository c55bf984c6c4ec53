//! One stage's body run over every tensor: statements in order, values step-uniform, per
//! tensor, per slot or per element (`V`), reductions in f64, model calls through the
//! `Oracle`.

use super::*;

pub(super) struct StepCx<'a, 'p, 'o> {
    pub(super) it: &'a Interpreter<'p>,
    /// The step state, for the metrics schedules read and the random stream's seed (the
    /// running stage's own states are taken out of it, into `states`).
    pub(super) st: &'a StepState,
    pub(super) body: &'p Body,
    pub(super) args: &'a [HyperValue],
    pub(super) hypers: &'a [Option<Vec<f64>>],
    pub(super) grad: Vec<Vec<f32>>,
    pub(super) params: Vec<Vec<f32>>,
    pub(super) states: Vec<StateValue>,
    pub(super) locals: Vec<V>,
    pub(super) step: f64,
    /// Which stage runs, for the random stream of `rademacher()`.
    pub(super) stage: usize,
    pub(super) oracle: std::cell::RefCell<Option<&'o mut dyn Oracle>>,
    /// The matrix values this run of the stage has computed (`matrix::Shared`).
    pub(super) matrices: std::cell::RefCell<matrix::Shared>,
}

impl StepCx<'_, '_, '_> {
    /// Runs the body; true when a `skip if` fired.
    pub(super) fn run(&mut self) -> Result<bool> {
        let mut skip = false;
        // Matrix states are written when the stage ends: until then a matrix expression
        // that reads one (wherever it is evaluated) sees the value the stage began with.
        let mut matrices = Vec::new();
        for s in &self.body.stmts {
            match s {
                Stmt::Run(_) => {
                    return Err(Error::internal("a `run` statement was not inlined"));
                }
                Stmt::Skip(e) => {
                    if let V::U(c) = self.eval(*e)? {
                        skip |= c != 0.0;
                    }
                }
                // A matrix `let` (or a number computed from a matrix) is a definition:
                // `crate::matrix` evaluates it where it is read.
                Stmt::Let(_, e) if matrix::deferred(self.body, *e) => {}
                Stmt::Let(l, e) => self.locals[*l] = self.eval(*e)?,
                Stmt::SetState(id, e) if self.body.states[*id].extent == Extent::Matrix => {
                    let v = self.mat_values(*e, matrix::Sink::state(self.body, *id)?)?;
                    matrices.push((*id, v));
                }
                Stmt::SetState(id, e) => {
                    let v = self.eval(*e)?;
                    let extent = self.body.states[*id].extent;
                    self.states[*id] = self.to_state(v, extent);
                }
                Stmt::SetGrad(e) => {
                    let v = self.eval(*e)?;
                    self.grad = self.elements(v);
                }
                Stmt::SetParam(e) => {
                    let v = self.eval(*e)?;
                    self.params = self.elements(v);
                }
            }
        }
        for (id, v) in matrices {
            self.states[id] = StateValue::Matrix(v);
        }
        Ok(skip)
    }

    pub(super) fn ntensors(&self) -> usize {
        self.it.sizes.len()
    }

    pub(super) fn elements(&self, v: V) -> Vec<Vec<f32>> {
        match v {
            V::E(e) => e,
            V::S(k, s) => self
                .it
                .views
                .iter()
                .zip(s)
                .map(|(view, vals)| {
                    (0..view.numel)
                        .map(|i| vals[view.slot(k, i)] as f32)
                        .collect()
                })
                .collect(),
            V::U(x) => self.it.sizes.iter().map(|&n| vec![x as f32; n]).collect(),
            V::T(xs) => self
                .it
                .sizes
                .iter()
                .zip(xs)
                .map(|(&n, x)| vec![x as f32; n])
                .collect(),
        }
    }

    pub(super) fn per_tensor(&self, v: &V) -> Vec<f64> {
        match v {
            V::U(x) => vec![*x; self.ntensors()],
            V::T(xs) => xs.clone(),
            V::S(..) | V::E(_) => Vec::new(),
        }
    }

    /// A value broadcast to (or kept at) slicing `k`.
    pub(super) fn slices(&self, v: V, k: Slice) -> Vec<Vec<f64>> {
        match v {
            V::S(l, s) if l == k => s,
            V::S(Slice::Outer, s) => self
                .it
                .views
                .iter()
                .zip(s)
                .map(|(view, vals)| {
                    (0..view.count(k))
                        .map(|j| vals[view.outer_of(k, j)])
                        .collect()
                })
                .collect(),
            other => {
                let per = self.per_tensor(&other);
                self.it
                    .views
                    .iter()
                    .enumerate()
                    .map(|(t, view)| vec![per.get(t).copied().unwrap_or(f64::NAN); view.count(k)])
                    .collect()
            }
        }
    }

    pub(super) fn to_state(&self, v: V, extent: Extent) -> StateValue {
        match extent {
            Extent::Element | Extent::Matrix => StateValue::Element(self.elements(v)),
            Extent::Tensor | Extent::Group => StateValue::Tensor(self.per_tensor(&v)),
            Extent::Outer | Extent::Row | Extent::Col | Extent::Unit | Extent::Lead => {
                let k = slice_of_extent(extent).unwrap_or(Slice::Outer);
                StateValue::Slice(k, self.slices(v, k))
            }
            Extent::Uniform => StateValue::Scalar(match v {
                V::U(x) => x,
                _ => f64::NAN,
            }),
        }
    }

    pub(super) fn eval(&self, id: ExprId) -> Result<V> {
        Ok(match &self.body.exprs[id] {
            Expr::Const(v) => V::U(*v),
            Expr::Step => V::U(self.step),
            Expr::Count => V::U(self.step - 1.0),
            Expr::Grad => V::E(self.grad.clone()),
            Expr::Param => V::E(self.params.clone()),
            // Only a number can be a definition evaluated where it is read (`deferred`):
            // a per-element local skips the search for its `let`.
            Expr::Local(l) if self.body.types[id].extent.fits_in(Extent::Tensor) => {
                match self.body.let_def(*l) {
                    Some(def) if matrix::deferred(self.body, def) => self.eval(def)?,
                    _ => self.locals[*l].clone(),
                }
            }
            Expr::Local(l) => self.locals[*l].clone(),
            Expr::State(s) => match &self.states[*s] {
                StateValue::Element(e) => V::E(e.clone()),
                StateValue::Slice(k, s) => V::S(*k, s.clone()),
                StateValue::Tensor(t) => V::T(t.clone()),
                StateValue::Scalar(x) => V::U(*x),
                StateValue::Matrix(_) => {
                    return Err(Error::internal("a matrix state read outside a matrix"))
                }
            },
            Expr::Hyper(i) => {
                let per_group = self
                    .hypers
                    .get(*i)
                    .and_then(|h| h.as_ref())
                    .ok_or_else(|| Error::internal("list used as a number"))?;
                self.spread_groups(per_group)
            }
            Expr::HyperIndex(i, k) => {
                let groups = self.it.recipe.groups.len().max(1);
                let mut per = Vec::with_capacity(groups);
                for g in 0..groups {
                    let xs = self
                        .it
                        .list_arg(self.st, self.args, *i, g, self.step - 1.0)?;
                    per.push(*xs.get(*k).ok_or_else(|| {
                        Error::user(format!("list has {} elements, index {k}", xs.len()))
                    })?);
                }
                self.spread_groups(&per)
            }
            Expr::Unary(op, a) => {
                let x = self.eval(*a)?;
                map1(
                    x,
                    |v| match op {
                        UnOp::Neg => -v,
                        UnOp::Not => f64::from(u8::from(v == 0.0)),
                    },
                    |v| match op {
                        UnOp::Neg => -v,
                        UnOp::Not => f32::from(u8::from(v == 0.0)),
                    },
                )
            }
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.eval(*a)?, self.eval(*b)?);
                if let Some(v) = self.arith_elements(*op, &x, &y) {
                    return Ok(v);
                }
                let op = *op;
                self.zip(
                    &[x, y],
                    |v| arith(op, v[0], v[1]),
                    |v| arith(op, v[0], v[1]),
                )
            }
            Expr::Select(c, a, b) => {
                let cond = self.eval(*c)?;
                // A step-uniform condition picks one branch: only that one is computed
                // (the same values; `clip_grad_norm_`'s p-norm branch is skipped at p = 2).
                if let V::U(u) = cond {
                    return self.eval(if u != 0.0 { *a } else { *b });
                }
                let vals = [cond, self.eval(*a)?, self.eval(*b)?];
                self.zip(
                    &vals,
                    |v| if v[0] != 0.0 { v[1] } else { v[2] },
                    |v| if v[0] != 0.0 { v[1] } else { v[2] },
                )
            }
            Expr::Call(b, xs) => {
                let vals = xs
                    .iter()
                    .map(|x| self.eval(*x))
                    .collect::<Result<Vec<_>, _>>()?;
                let b = *b;
                self.zip(&vals, |v| builtin(b, v), |v| builtin(b, v))
            }
            Expr::Reduce(op, scope, x) => {
                let x = self.eval(*x)?;
                self.reduce(*op, *scope, x)?
            }
            Expr::StrEq(i, lit) => {
                let groups = self.it.recipe.groups.len().max(1);
                let v = self
                    .args
                    .get(*i)
                    .ok_or_else(|| Error::internal("missing argument"))?;
                let per = (0..groups)
                    .map(|g| str_value(v, g).map(|s| f64::from(u8::from(s == lit))))
                    .collect::<Result<Vec<_>, _>>()?;
                self.spread_groups(&per)
            }
            Expr::GradAt(x) => {
                let point = self.elements(self.eval(*x)?);
                let mut oracle = self.oracle.borrow_mut();
                let o = oracle
                    .as_mut()
                    .ok_or("`grad_at` needs a model that computes gradients at a point")?;
                V::E(check_shapes(o.grad_at(&point)?, &self.it.sizes, "grad_at")?)
            }
            Expr::Hvp(x) => {
                let v = self.elements(self.eval(*x)?);
                let mut oracle = self.oracle.borrow_mut();
                let o = oracle
                    .as_mut()
                    .ok_or("`hvp` needs a model that computes Hessian-vector products")?;
                V::E(check_shapes(
                    o.hvp(&self.params, &v)?,
                    &self.it.sizes,
                    "hvp",
                )?)
            }
            Expr::Mat(MatOp::ToElements, xs) if xs.len() == 1 => self.mat_elements(xs[0])?,
            // A number per tensor: the one nonzero entry `Sink::Number` writes, summed.
            Expr::Mat(op, _) if op.gives_number() => V::T(
                self.mat_values(id, matrix::Sink::Number)?
                    .iter()
                    .map(|v| v.iter().map(|&x| f64::from(x)).sum())
                    .collect(),
            ),
            Expr::Mat(..) | Expr::Fold { .. } => {
                return Err(Error::internal(
                    "a matrix value read outside `elements(...)`",
                ))
            }
            Expr::Shape(info) => V::T(
                self.it
                    .views
                    .iter()
                    .map(|v| match info {
                        ShapeInfo::Rank => v.rank as f64,
                        ShapeInfo::Numel => v.numel as f64,
                        ShapeInfo::FactorDim => v.factor_dim as f64,
                        ShapeInfo::Rows => v.mat_rows as f64,
                        ShapeInfo::Cols => v.mat_cols as f64,
                    })
                    .collect(),
            ),
            Expr::Loss => V::U(self.st.loss()),
            Expr::Rademacher => {
                let step = self.step as u64;
                V::E(
                    self.it
                        .sizes
                        .iter()
                        .enumerate()
                        .map(|(t, &n)| {
                            (0..n)
                                .map(|i| rademacher(self.st.seed(), step, self.stage, t, i))
                                .collect()
                        })
                        .collect(),
                )
            }
            Expr::ScheduleAt(..) | Expr::SchedCall(..) | Expr::List(..) | Expr::Metric => {
                return Err(Error::internal("schedule-only expression in a stage"))
            }
        })
    }

    pub(super) fn spread_groups(&self, per_group: &[f64]) -> V {
        if per_group
            .iter()
            .all(|v| v.to_bits() == per_group[0].to_bits())
        {
            V::U(per_group[0])
        } else {
            V::T(self.it.group_of.iter().map(|&g| per_group[g]).collect())
        }
    }

    /// `+ - * /` where an operand is per element and the other per element, per tensor or
    /// uniform: the same f32 arithmetic as `zip`, with the operator chosen once per tensor
    /// instead of once per element (the interpreter's hot path).
    pub(super) fn arith_elements<'v>(&self, op: BinOp, x: &'v V, y: &'v V) -> Option<V> {
        if !matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div) {
            return None;
        }
        // Each operand as, per tensor, either a slice or one scalar.
        enum Side<'v> {
            Slice(&'v [Vec<f32>]),
            Scalar(Vec<f32>),
        }
        let side = |v: &'v V| -> Option<Side<'v>> {
            Some(match v {
                V::E(e) => Side::Slice(e),
                V::U(u) => Side::Scalar(vec![*u as f32; self.ntensors()]),
                V::T(t) => Side::Scalar(t.iter().map(|x| *x as f32).collect()),
                V::S(..) => return None,
            })
        };
        let (a, b) = (side(x)?, side(y)?);
        if matches!((&a, &b), (Side::Scalar(_), Side::Scalar(_))) {
            return None;
        }
        fn apply(
            op: BinOp,
            out: &mut Vec<f32>,
            n: usize,
            a: impl Fn(usize) -> f32,
            b: impl Fn(usize) -> f32,
        ) {
            out.extend((0..n).map(|i| match op {
                BinOp::Add => a(i) + b(i),
                BinOp::Sub => a(i) - b(i),
                BinOp::Mul => a(i) * b(i),
                _ => a(i) / b(i),
            }));
        }
        let mut result = Vec::with_capacity(self.ntensors());
        for (t, &n) in self.it.sizes.iter().enumerate() {
            let mut out = Vec::with_capacity(n);
            match (&a, &b) {
                (Side::Slice(p), Side::Slice(q)) => {
                    let (p, q) = (&p[t], &q[t]);
                    match op {
                        BinOp::Add => out.extend(p.iter().zip(q).map(|(x, y)| x + y)),
                        BinOp::Sub => out.extend(p.iter().zip(q).map(|(x, y)| x - y)),
                        BinOp::Mul => out.extend(p.iter().zip(q).map(|(x, y)| x * y)),
                        _ => out.extend(p.iter().zip(q).map(|(x, y)| x / y)),
                    }
                }
                (Side::Slice(p), Side::Scalar(s)) => {
                    let (p, s) = (&p[t], s[t]);
                    apply(op, &mut out, n, |i| p[i], |_| s);
                }
                (Side::Scalar(s), Side::Slice(q)) => {
                    let (s, q) = (s[t], &q[t]);
                    apply(op, &mut out, n, |_| s, |i| q[i]);
                }
                (Side::Scalar(_), Side::Scalar(_)) => return None,
            }
            result.push(out);
        }
        Some(V::E(result))
    }

    /// Applies an elementwise function, broadcasting to the finest operand.
    pub(super) fn zip(
        &self,
        vals: &[V],
        f64op: impl Fn(&[f64]) -> f64,
        f32op: impl Fn(&[f32]) -> f32,
    ) -> V {
        if vals.iter().all(|v| matches!(v, V::U(_))) {
            let xs: Vec<f64> = vals
                .iter()
                .map(|v| if let V::U(x) = v { *x } else { 0.0 })
                .collect();
            return V::U(f64op(&xs));
        }
        if vals.iter().all(|v| matches!(v, V::U(_) | V::T(_))) {
            let cols: Vec<Vec<f64>> = vals.iter().map(|v| self.per_tensor(v)).collect();
            return V::T(
                (0..self.ntensors())
                    .map(|t| {
                        let xs: Vec<f64> = cols.iter().map(|c| c[t]).collect();
                        f64op(&xs)
                    })
                    .collect(),
            );
        }
        // Sliced operands of one slicing (an outer one broadcasts into rows or columns)
        // stay sliced, in f64; anything finer becomes per element.
        let kinds: Vec<Slice> = vals
            .iter()
            .filter_map(|v| if let V::S(k, _) = v { Some(*k) } else { None })
            .collect();
        let finest = kinds
            .iter()
            .copied()
            .find(|k| *k != Slice::Outer)
            .unwrap_or(Slice::Outer);
        // One slicing throughout, or rows (columns) with outer slices broadcast into them.
        let one_slicing = kinds.iter().all(|k| *k == finest)
            || (matches!(finest, Slice::Row | Slice::Col)
                && kinds.iter().all(|k| *k == finest || *k == Slice::Outer));
        if !kinds.is_empty() && one_slicing && !vals.iter().any(|v| matches!(v, V::E(_))) {
            let cols: Vec<Vec<Vec<f64>>> = vals
                .iter()
                .map(|v| self.slices(v.clone(), finest))
                .collect();
            let mut out = Vec::with_capacity(self.ntensors());
            let mut xs = vec![0f64; vals.len()];
            for (t, view) in self.it.views.iter().enumerate() {
                let mut col = Vec::with_capacity(view.count(finest));
                for j in 0..view.count(finest) {
                    for (k, c) in cols.iter().enumerate() {
                        xs[k] = c[t][j];
                    }
                    col.push(f64op(&xs));
                }
                out.push(col);
            }
            return V::S(finest, out);
        }
        let mut out = Vec::with_capacity(self.ntensors());
        let mut xs = vec![0f32; vals.len()];
        for (t, &n) in self.it.sizes.iter().enumerate() {
            let mut col = Vec::with_capacity(n);
            let view = &self.it.views[t];
            for i in 0..n {
                for (k, v) in vals.iter().enumerate() {
                    xs[k] = match v {
                        V::U(x) => *x as f32,
                        V::T(ts) => ts[t] as f32,
                        V::S(s, vs) => vs[t][view.slot(*s, i)] as f32,
                        V::E(es) => es[t][i],
                    };
                }
                col.push(f32op(&xs));
            }
            out.push(col);
        }
        V::E(out)
    }

    pub(super) fn reduce(&self, op: ReduceOp, scope: Scope, x: V) -> Result<V> {
        let finish = |p: &Partial| p.finish(op);
        // Reductions into a slicing: one partial per slot of the target.
        if let Some(target) = slice_of_extent(scope.extent()) {
            let mut out = Vec::with_capacity(self.ntensors());
            for (t, view) in self.it.views.iter().enumerate() {
                let mut acc = vec![Partial::empty(); view.count(target)];
                match &x {
                    V::E(es) => {
                        for (i, v) in es[t].iter().enumerate() {
                            acc[view.slot(target, i)].push(f64::from(*v));
                        }
                    }
                    V::S(k, s) if target == Slice::Outer => {
                        for (j, v) in s[t].iter().enumerate() {
                            acc[view.outer_of(*k, j)].push(*v);
                        }
                    }
                    _ => {
                        return Err(
                            "reduction of a value that does not vary within the scope".into()
                        )
                    }
                }
                out.push(acc.iter().map(finish).collect());
            }
            return Ok(V::S(target, out));
        }
        // Partial results per tensor: (sum, sum of squares, max, min, all finite, count).
        let parts: Vec<Partial> = match &x {
            V::E(es) => es.iter().map(|t| Partial::of(t)).collect(),
            V::S(_, s) => s
                .iter()
                .map(|vals| {
                    let mut p = Partial::empty();
                    vals.iter().for_each(|v| p.push(*v));
                    p
                })
                .collect(),
            _ => {
                return Err(Error::internal(
                    "reduction of a value that is not per element",
                ))
            }
        };
        Ok(match scope {
            Scope::Tensor => V::T(parts.iter().map(finish).collect()),
            Scope::Global => V::U(finish(
                &parts.iter().fold(Partial::empty(), |a, b| a.merge(b)),
            )),
            Scope::Row | Scope::Col | Scope::Outer | Scope::Unit | Scope::Lead => {
                return Err(Error::internal(
                    "unreachable: sliced reductions return above",
                ))
            }
            Scope::Group => {
                let groups = self.it.recipe.groups.len().max(1);
                let mut acc = vec![Partial::empty(); groups];
                for (t, p) in parts.iter().enumerate() {
                    let g = self.it.group_of[t];
                    acc[g] = acc[g].merge(p);
                }
                V::T(self.it.group_of.iter().map(|&g| finish(&acc[g])).collect())
            }
        })
    }
}

pub(super) fn check_shapes(
    out: Vec<Vec<f32>>,
    sizes: &[usize],
    what: &str,
) -> Result<Vec<Vec<f32>>> {
    if out.len() != sizes.len() || out.iter().zip(sizes).any(|(t, &n)| t.len() != n) {
        return Err(Error::user(format!(
            "the model's `{what}` returned tensors of the wrong sizes"
        )));
    }
    Ok(out)
}

pub(super) fn map1(x: V, f: impl Fn(f64) -> f64, g: impl Fn(f32) -> f32) -> V {
    match x {
        V::U(v) => V::U(f(v)),
        V::T(vs) => V::T(vs.into_iter().map(f).collect()),
        V::S(k, s) => V::S(
            k,
            s.into_iter()
                .map(|t| t.into_iter().map(&f).collect())
                .collect(),
        ),
        V::E(es) => V::E(
            es.into_iter()
                .map(|t| t.into_iter().map(&g).collect())
                .collect(),
        ),
    }
}

impl StepCx<'_, '_, '_> {
    /// `elements(M)`: matrix expression `m` for every tensor (`crate::matrix`), each the
    /// shape of its tensor's matrix view, back as one value per element.
    fn mat_elements(&self, m: ExprId) -> Result<V> {
        Ok(V::E(self.mat_values(m, matrix::Sink::Elements)?))
    }

    /// Matrix expression `m` for every tensor, into `sink`'s shape.
    pub(super) fn mat_values(&self, m: ExprId, sink: matrix::Sink<'_>) -> Result<Vec<Vec<f32>>> {
        let leaves = matrix::leaves(self.body, m);
        let mut elems: Vec<(ExprId, Vec<Vec<f32>>)> = Vec::new();
        let mut scalars: Vec<(ExprId, Vec<f64>)> = Vec::new();
        let mut sources: Vec<(ExprId, matrix::Source)> = Vec::new();
        for (id, kind) in leaves {
            match kind {
                matrix::LeafKind::State(s) => {
                    sources.push((id, matrix::Source::state(self.body, s, &self.states[s])?))
                }
                matrix::LeafKind::Elements => {
                    let v = self.eval(id)?;
                    elems.push((id, self.elements(v)));
                }
                matrix::LeafKind::Scalar => {
                    let v = self.eval(id)?;
                    scalars.push((id, self.per_tensor(&v)));
                }
            }
        }
        sources.extend(
            elems
                .iter()
                .map(|(id, v)| (*id, matrix::Source::Elements(v))),
        );
        sources.extend(
            scalars
                .iter()
                .map(|(id, v)| (*id, matrix::Source::Scalars(v))),
        );
        let name = |t: usize| self.it.tensor_name(t).to_string();
        let mut shared = self.matrices.borrow_mut();
        matrix::evaluate(
            self.body,
            m,
            &self.it.views,
            &name,
            &sources,
            sink,
            &mut shared,
            None,
            &matrix::HostGemm,
        )
    }

    /// A matrix state's first value: its initial matrix, or its initial number in every
    /// entry.
    pub(super) fn mat_init(&self, id: crate::ir::StateId) -> Result<StateValue> {
        let st = &self.body.states[id];
        let sink = matrix::Sink::state(self.body, id)?;
        if self.body.types[st.init].extent == Extent::Matrix {
            return Ok(StateValue::Matrix(self.mat_values(st.init, sink)?));
        }
        let matrix::Sink::State(_, shape) = sink else {
            return Err(Error::internal("a matrix state without a shape"));
        };
        let per = self.per_tensor(&self.eval(st.init)?);
        let mut out = Vec::with_capacity(self.it.views.len());
        for (t, view) in self.it.views.iter().enumerate() {
            let (r, c) = matrix::sides(view, shape);
            out.push(vec![per.get(t).copied().unwrap_or(f64::NAN) as f32; r * c]);
        }
        Ok(StateValue::Matrix(out))
    }
}
