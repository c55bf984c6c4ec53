//! Building the AST from pest's pairs: one method per grammar construct, spans on every
//! node.

use super::*;

struct Builder<'a> {
    file: FileId,
    base: usize,
    errors: &'a mut Vec<Diagnostic>,
}

pub(super) fn build_file(
    file: FileId,
    base: usize,
    pair: Pair<Rule>,
    ast: &mut Ast,
    errors: &mut Vec<Diagnostic>,
) {
    let mut b = Builder { file, base, errors };
    for p in pair.into_inner() {
        match p.as_rule() {
            Rule::module_decl => {
                if let Some(path) = p.into_inner().next() {
                    ast.module = Some(b.ident(path));
                }
            }
            Rule::import => ast.imports.push(b.import(p)),
            Rule::definition => ast.defs.push(b.definition(p)),
            Rule::recipe => ast.recipes.push(b.recipe(p)),
            _ => {}
        }
    }
}

impl Builder<'_> {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.file, self.base + s.start()..self.base + s.end())
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn import(&mut self, p: Pair<Rule>) -> Import {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let module = inner.next().map(|m| self.ident(m)).unwrap_or(Ident {
            name: String::new(),
            span,
        });
        let names = match inner.next().and_then(|t| t.into_inner().next()) {
            None => ImportNames::Module,
            Some(t) if t.as_rule() == Rule::import_all => ImportNames::All,
            Some(t) => ImportNames::Some(t.into_inner().map(|n| self.ident(n)).collect()),
        };
        Import {
            module,
            names,
            span,
        }
    }

    fn definition(&mut self, p: Pair<Rule>) -> Def {
        let span = self.span(&p);
        let mut kind = DefKind::Transform;
        let mut name = Ident {
            name: String::new(),
            span,
        };
        let mut params = Vec::new();
        let mut requires = Vec::new();
        let mut body = DefBody::Block(Vec::new());
        for q in p.into_inner() {
            match q.as_rule() {
                Rule::def_kind => {
                    kind = match q.as_str() {
                        "optimizer" => DefKind::Optimizer,
                        "schedule" => DefKind::Schedule,
                        "function" => DefKind::Function,
                        _ => DefKind::Transform,
                    }
                }
                Rule::ident => name = self.ident(q),
                Rule::param => params.push(self.param(q)),
                Rule::requires_clause => {
                    let mut inner = q.into_inner();
                    if let (Some(c), Some(m)) = (inner.next(), inner.next()) {
                        requires.push(Requirement {
                            cond: self.expr(c),
                            message: self.string(m).0,
                        });
                    }
                }
                Rule::def_expr_body => {
                    if let Some(e) = q.into_inner().next() {
                        body = DefBody::Expr(self.expr(e));
                    }
                }
                Rule::block => body = DefBody::Block(self.block(q)),
                Rule::builtin_body => {
                    if let Some(s) = q.into_inner().next() {
                        let (name, span) = self.string(s);
                        body = DefBody::Builtin(name, span);
                    }
                }
                _ => {}
            }
        }
        Def {
            kind,
            name,
            params,
            requires,
            body,
            span,
        }
    }

    fn param(&mut self, p: Pair<Rule>) -> Param {
        let span = self.span(&p);
        let mut name = Ident {
            name: String::new(),
            span,
        };
        let mut ty = TypeExpr::Scalar(ScalarType::Real);
        let mut constraint = None;
        let mut default = None;
        for q in p.into_inner() {
            match q.as_rule() {
                Rule::ident | Rule::label => name = self.ident(q),
                Rule::ty => ty = self.ty(q),
                Rule::constraint => constraint = q.into_inner().next().map(|c| self.constraint(c)),
                Rule::expr => default = Some(self.expr(q)),
                _ => {}
            }
        }
        Param {
            name,
            ty,
            constraint,
            default,
            span,
        }
    }

    fn ty(&self, p: Pair<Rule>) -> TypeExpr {
        let scalar = |q: &Pair<Rule>| match q.as_str() {
            "int" => ScalarType::Int,
            "bool" => ScalarType::Bool,
            "schedule" => ScalarType::Schedule,
            "str" => ScalarType::Str,
            "chain" => ScalarType::Chain,
            _ => ScalarType::Real,
        };
        let Some(inner) = p.into_inner().next() else {
            return TypeExpr::Scalar(ScalarType::Real);
        };
        match inner.as_rule() {
            Rule::list_ty => {
                let s: Vec<_> = inner.into_inner().collect();
                TypeExpr::List(s.first().map(scalar).unwrap_or(ScalarType::Real))
            }
            Rule::map_ty => {
                let s: Vec<_> = inner.into_inner().collect();
                TypeExpr::Map(
                    s.first().map(scalar).unwrap_or(ScalarType::Int),
                    s.get(1).map(scalar).unwrap_or(ScalarType::Real),
                )
            }
            _ => TypeExpr::Scalar(scalar(&inner)),
        }
    }

    fn constraint(&mut self, p: Pair<Rule>) -> Constraint {
        let span = self.span(&p);
        let rule = p.as_rule();
        let parts: Vec<Pair<Rule>> = p.into_inner().collect();
        if rule == Rule::choice_constraint {
            let values = parts.into_iter().map(|p| self.string(p).0).collect();
            return Constraint::Choice { values, span };
        }
        if rule == Rule::range_constraint && parts.len() == 4 {
            Constraint::Range {
                lo_closed: parts[0].as_str() == "[",
                lo: self.expr(parts[1].clone()),
                hi: self.expr(parts[2].clone()),
                hi_closed: parts[3].as_str() == "]",
                span,
            }
        } else {
            let op = parts
                .first()
                .map(|o| cmp_op(o.as_str()))
                .unwrap_or(CmpOp::Ge);
            let value = match parts.get(1) {
                Some(v) => self.expr(v.clone()),
                None => Expr {
                    kind: ExprKind::Number {
                        value: 0.0,
                        is_int: true,
                    },
                    span,
                },
            };
            Constraint::Bound { op, value, span }
        }
    }

    fn block(&mut self, p: Pair<Rule>) -> Vec<Stmt> {
        p.into_inner().map(|s| self.statement(s)).collect()
    }

    fn statement(&mut self, p: Pair<Rule>) -> Stmt {
        let span = self.span(&p);
        let rule = p.as_rule();
        let parts: Vec<Pair<Rule>> = p.into_inner().collect();
        match rule {
            Rule::state_decl => {
                let name = self.ident(parts[0].clone());
                let (extent, init) = if parts.len() == 3 {
                    let dim = |d: &Pair<Rule>| match d.as_str() {
                        "cols" => MatDim::Cols,
                        _ => MatDim::Rows,
                    };
                    let e = match parts[1].as_str() {
                        _ if parts[1].as_rule() == Rule::matrix_shape => {
                            let dims: Vec<Pair<Rule>> = parts[1].clone().into_inner().collect();
                            match dims.as_slice() {
                                [a, b] => StateExtent::Matrix(dim(a), dim(b)),
                                _ => StateExtent::Element,
                            }
                        }
                        "tensor" => StateExtent::Tensor,
                        "scalar" => StateExtent::Scalar,
                        "row" => StateExtent::Row,
                        "col" => StateExtent::Col,
                        _ => StateExtent::Element,
                    };
                    (Some((e, self.span(&parts[1]))), self.expr(parts[2].clone()))
                } else {
                    (None, self.expr(parts[1].clone()))
                };
                Stmt::State {
                    name,
                    extent,
                    init,
                    span,
                }
            }
            Rule::observe_block => Stmt::Observe {
                stmts: parts.into_iter().map(|q| self.statement(q)).collect(),
                span,
            },
            Rule::repeat_block => {
                // parts: the `repeat` keyword, the count, then the statements.
                let mut rest = parts.into_iter().skip(1);
                let count = match rest.next() {
                    Some(c) => self.expr(c),
                    None => number(0.0, span),
                };
                Stmt::Repeat {
                    count,
                    stmts: rest.map(|q| self.statement(q)).collect(),
                    span,
                }
            }
            Rule::every_block => {
                // parts: the `every` keyword, the period, the `steps` keyword, then the
                // statements.
                let mut rest = parts.into_iter().skip(1);
                let period = match rest.next() {
                    Some(c) => self.expr(c),
                    None => number(0.0, span),
                };
                Stmt::Every {
                    period,
                    stmts: rest.skip(1).map(|q| self.statement(q)).collect(),
                    span,
                }
            }
            Rule::skip_stmt => Stmt::Skip {
                cond: self.expr(parts[0].clone()),
                span,
            },
            Rule::run_stmt => Stmt::Run {
                // parts: the `run` keyword, then the chain's name.
                chain: self.ident(parts[parts.len() - 1].clone()),
                span,
            },
            Rule::eval_stmt => Stmt::Eval {
                value: self.expr(parts[0].clone()),
                span,
            },
            Rule::let_stmt => Stmt::Let {
                name: self.ident(parts[0].clone()),
                value: self.expr(parts[1].clone()),
                span,
            },
            Rule::assign => {
                let op = match parts[1].as_str() {
                    "+=" => AssignOp::Add,
                    "-=" => AssignOp::Sub,
                    "*=" => AssignOp::Mul,
                    "/=" => AssignOp::Div,
                    _ => AssignOp::Set,
                };
                Stmt::Assign {
                    target: self.ident(parts[0].clone()),
                    op,
                    value: self.expr(parts[2].clone()),
                    span,
                }
            }
            _ => Stmt::Expr(self.expr(parts[0].clone())),
        }
    }

    fn recipe(&mut self, p: Pair<Rule>) -> Recipe {
        let span = self.span(&p);
        let mut parts = p.into_inner();
        let name = parts.next().map(|n| self.ident(n)).unwrap_or(Ident {
            name: String::new(),
            span,
        });
        let mut items = Vec::new();
        for q in parts {
            let s = self.span(&q);
            let rule = q.as_rule();
            let text = q.as_str();
            let inner: Vec<Pair<Rule>> = q.into_inner().collect();
            match rule {
                Rule::unknown_item => {
                    let mut parts = inner.into_iter();
                    let Some(name) = parts.next().map(|n| self.ident(n)) else {
                        continue;
                    };
                    let rest = parts.next().map_or("", |t| t.as_str()).trim().to_string();
                    match item_rule(&name.name) {
                        // A real item that did not parse as one: its own syntax error.
                        Some((rule, form)) => self.errors.push(super::item_syntax_error(
                            self.file,
                            (s.start, text),
                            rule,
                            form,
                        )),
                        None => items.push(RecipeItem::Unknown {
                            name,
                            rest,
                            // The line without the blanks before a `}` or a comment.
                            span: Span::new(self.file, s.start..s.start + text.trim_end().len()),
                        }),
                    }
                }
                Rule::steps_item => items.push(RecipeItem::Steps(self.expr(inner[0].clone()), s)),
                Rule::model_item => items.push(RecipeItem::Model(self.expr(inner[0].clone()), s)),
                Rule::precision_item => {
                    let entries = inner
                        .into_iter()
                        .filter_map(|e| {
                            let mut kv = e.into_inner();
                            Some((self.ident(kv.next()?), self.ident(kv.next()?)))
                        })
                        .collect();
                    items.push(RecipeItem::Precision(entries, s));
                }
                Rule::data_item => items.push(RecipeItem::Data(self.expr(inner[0].clone()), s)),
                Rule::parallel_item => {
                    let entries = inner
                        .into_iter()
                        .filter_map(|e| {
                            let mut kv = e.into_inner();
                            let k = kv.next()?;
                            let v = kv.next()?;
                            Some((self.ident(k), self.expr(v)))
                        })
                        .collect();
                    items.push(RecipeItem::Parallel(entries, s));
                }
                Rule::curriculum_item => {
                    let mut after = None;
                    let mut entries = Vec::new();
                    for e in inner {
                        match e.as_rule() {
                            Rule::after_clause => {
                                after = e.into_inner().next().map(|x| self.expr(x));
                            }
                            _ => {
                                let mut kv = e.into_inner();
                                if let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                                    entries.push((self.ident(k), self.expr(v)));
                                }
                            }
                        }
                    }
                    items.push(RecipeItem::Curriculum {
                        after,
                        entries,
                        span: s,
                    });
                }
                Rule::schedule_item => items.push(RecipeItem::Schedule(
                    self.ident(inner[0].clone()),
                    self.expr(inner[1].clone()),
                    s,
                )),
                Rule::update_item => items.push(RecipeItem::Update(self.expr(inner[0].clone()), s)),
                Rule::groups_item => {
                    let groups = inner.into_iter().map(|g| self.group(g)).collect();
                    items.push(RecipeItem::Groups(groups, s));
                }
                _ => {}
            }
        }
        Recipe { name, items, span }
    }

    fn group(&mut self, p: Pair<Rule>) -> GroupDef {
        let span = self.span(&p);
        let mut parts = p.into_inner();
        let name = parts.next().map(|n| self.ident(n)).unwrap_or(Ident {
            name: String::new(),
            span,
        });
        let mut patterns = None;
        let mut except = Vec::new();
        if let Some(body) = parts.next() {
            if body.as_rule() == Rule::patterns {
                let mut list = Vec::new();
                for q in body.into_inner() {
                    match q.as_rule() {
                        Rule::string => list.push(self.string(q)),
                        Rule::except_clause => {
                            except = q.into_inner().map(|s| self.string(s)).collect()
                        }
                        _ => {}
                    }
                }
                patterns = Some(list);
            }
        }
        GroupDef {
            name,
            patterns,
            except,
            span,
        }
    }

    fn string(&self, p: Pair<Rule>) -> (String, Span) {
        let s = p.as_str();
        let inner = s.get(1..s.len().saturating_sub(1)).unwrap_or("");
        (inner.to_string(), self.span(&p))
    }

    fn expr(&mut self, p: Pair<Rule>) -> Expr {
        if matches!(
            p.as_rule(),
            Rule::number | Rule::boolean | Rule::ident | Rule::string
        ) {
            return self.operand(p);
        }
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut parts: Vec<Pair<Rule>> = p.into_inner().collect();
        let kind = match rule {
            Rule::expr | Rule::result_expr => {
                return match parts.pop() {
                    Some(q) => self.expr(q),
                    None => number(0.0, span),
                }
            }
            Rule::if_expr => {
                let c = self.expr(parts[0].clone());
                let a = self.expr(parts[1].clone());
                let e = self.expr(parts[2].clone());
                ExprKind::If(Box::new(c), Box::new(a), Box::new(e))
            }
            Rule::pipe => {
                let stages: Vec<Expr> = parts
                    .into_iter()
                    .filter(|q| q.as_rule() != Rule::pipe_op)
                    .map(|q| self.expr(q))
                    .collect();
                if stages.len() == 1 {
                    return stages
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| number(0.0, span));
                }
                ExprKind::Pipe(stages)
            }
            Rule::or_expr | Rule::and_expr | Rule::add_expr | Rule::mul_expr | Rule::cmp_expr => {
                return self.left_assoc(parts);
            }
            Rule::not_expr | Rule::unary => {
                if parts.len() > MAX_CHAIN {
                    return self.too_long(&parts[0]);
                }
                let operand = match parts.pop() {
                    Some(q) => self.expr(q),
                    None => return number(0.0, span),
                };
                let op = if rule == Rule::not_expr {
                    UnOp::Not
                } else {
                    UnOp::Neg
                };
                let mut e = operand;
                for o in parts.iter().rev() {
                    let s = self.span(o).to(e.span);
                    e = Expr {
                        kind: ExprKind::Unary(op, Box::new(e)),
                        span: s,
                    };
                }
                return e;
            }
            Rule::power => {
                if parts.len() == 3 {
                    let a = self.expr(parts[0].clone());
                    let b = self.expr(parts[2].clone());
                    ExprKind::Binary(BinOp::Pow, Box::new(a), Box::new(b))
                } else {
                    return self.expr(parts.remove(0));
                }
            }
            Rule::postfix => {
                let mut iter = parts.into_iter();
                let Some(head) = iter.next() else {
                    return number(0.0, span);
                };
                let mut e = self.expr(head);
                for q in iter {
                    let s = e.span.to(self.span(&q));
                    if q.as_rule() == Rule::call_args {
                        let args = q.into_inner().map(|a| self.arg(a)).collect();
                        let callee = match &e.kind {
                            ExprKind::Name(n) => Ident {
                                name: n.clone(),
                                span: e.span,
                            },
                            _ => {
                                self.errors.push(
                                    Diagnostic::error("E0002", e.span, "only a name can be called")
                                        .with_label("this is not the name of a function")
                                        .with_help("call a definition or builtin by its name, e.g. `sqrt(x)`"),
                                );
                                Ident {
                                    name: String::new(),
                                    span: e.span,
                                }
                            }
                        };
                        e = Expr {
                            kind: ExprKind::Call { callee, args },
                            span: s,
                        };
                    } else {
                        let idx = match q.into_inner().next() {
                            Some(i) => self.expr(i),
                            None => number(0.0, s),
                        };
                        e = Expr {
                            kind: ExprKind::Index(Box::new(e), Box::new(idx)),
                            span: s,
                        };
                    }
                }
                return e;
            }
            Rule::list => ExprKind::List(parts.into_iter().map(|q| self.expr(q)).collect()),
            Rule::map => {
                let mut entries = Vec::new();
                for entry in parts {
                    let mut kv = entry.into_inner();
                    let (Some(k), Some(v)) = (kv.next(), kv.next()) else {
                        continue;
                    };
                    let key = if k.as_rule() == Rule::number {
                        let (value, _) = parse_number(k.as_str());
                        MapKey::Number(value, self.span(&k))
                    } else {
                        MapKey::Name(self.ident(k))
                    };
                    entries.push((key, self.expr(v)));
                }
                ExprKind::Map(entries)
            }
            _ => ExprKind::Number {
                value: 0.0,
                is_int: true,
            },
        };
        Expr { kind, span }
    }

    fn left_assoc(&mut self, parts: Vec<Pair<Rule>>) -> Expr {
        if parts.len() > 2 * MAX_CHAIN {
            return self.too_long(&parts[0]);
        }
        let mut iter = parts.into_iter();
        let Some(first) = iter.next() else {
            return number(0.0, Span::default());
        };
        let mut acc = self.operand(first);
        while let (Some(op), Some(rhs)) = (iter.next(), iter.next()) {
            let op = match op.as_rule() {
                Rule::or_op => BinOp::Or,
                Rule::and_op => BinOp::And,
                Rule::cmp_op => BinOp::Cmp(cmp_op(op.as_str())),
                _ => match op.as_str() {
                    "+" => BinOp::Add,
                    "-" => BinOp::Sub,
                    "*" => BinOp::Mul,
                    "@" => {
                        // `a @ b` is `matmul(a, b)`: a matrix function, not an operator on
                        // numbers.
                        let rhs = self.operand(rhs);
                        let span = acc.span.to(rhs.span);
                        let callee = Ident {
                            name: "matmul".into(),
                            span: self.span(&op),
                        };
                        let args = [acc, rhs]
                            .into_iter()
                            .map(|value| Arg { name: None, value })
                            .collect();
                        acc = Expr {
                            kind: ExprKind::Call { callee, args },
                            span,
                        };
                        continue;
                    }
                    _ => BinOp::Div,
                },
            };
            let rhs = self.operand(rhs);
            let span = acc.span.to(rhs.span);
            acc = Expr {
                kind: ExprKind::Binary(op, Box::new(acc), Box::new(rhs)),
                span,
            };
        }
        acc
    }

    fn too_long(&mut self, first: &Pair<Rule>) -> Expr {
        let span = self.span(first);
        self.errors.push(
            Diagnostic::error(
                "E0001",
                span,
                format!("an expression chains more than {MAX_CHAIN} operators"),
            )
            .with_label("starts here")
            .with_help("split it with `let` bindings"),
        );
        number(0.0, span)
    }

    /// Leaves (numbers, names, booleans) come straight from atomic rules.
    fn operand(&mut self, p: Pair<Rule>) -> Expr {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::number => {
                let (value, is_int) = parse_number(p.as_str());
                Expr {
                    kind: ExprKind::Number { value, is_int },
                    span,
                }
            }
            Rule::boolean => Expr {
                kind: ExprKind::Bool(p.as_str() == "true"),
                span,
            },
            Rule::string => Expr {
                kind: ExprKind::Str(self.string(p).0),
                span,
            },
            Rule::ident => Expr {
                kind: ExprKind::Name(p.as_str().to_string()),
                span,
            },
            _ => self.expr(p),
        }
    }

    fn arg(&mut self, p: Pair<Rule>) -> Arg {
        let parts: Vec<Pair<Rule>> = p.into_inner().collect();
        if parts.len() == 2 {
            Arg {
                name: Some(self.ident(parts[0].clone())),
                value: self.expr(parts[1].clone()),
            }
        } else {
            let value = match parts.into_iter().next() {
                Some(v) => self.expr(v),
                None => number(0.0, Span::default()),
            };
            Arg { name: None, value }
        }
    }
}

fn cmp_op(s: &str) -> CmpOp {
    match s {
        "<" => CmpOp::Lt,
        "<=" => CmpOp::Le,
        ">" => CmpOp::Gt,
        ">=" => CmpOp::Ge,
        "==" => CmpOp::Eq,
        _ => CmpOp::Ne,
    }
}

fn number(value: f64, span: Span) -> Expr {
    Expr {
        kind: ExprKind::Number {
            value,
            is_int: false,
        },
        span,
    }
}

/// `100_000` → (100000, int); `1e-3` → (0.001, real). The grammar guarantees the shape.
pub fn parse_number(text: &str) -> (f64, bool) {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let is_int = !clean.contains(['.', 'e', 'E']);
    (clean.parse::<f64>().unwrap_or(f64::NAN), is_int)
}

/// The rule of a recipe item whose leading word is not a keyword (so a broken one reaches
/// `unknown_item`), by that word, with the item's form for the message.
fn item_rule(word: &str) -> Option<(Rule, &'static str)> {
    Some(match word {
        "model" => (Rule::model_item, "model = mlp(layers: [64, 128, 10])"),
        "data" => (Rule::data_item, "data = csv(file: \"data/digits.csv\")"),
        "precision" => (Rule::precision_item, "precision { params: bf16 }"),
        "curriculum" => (Rule::curriculum_item, "curriculum { difficulty = loss }"),
        "parallel" => (Rule::parallel_item, "parallel { data: 8, zero: 1 }"),
        _ => return None,
    })
}
