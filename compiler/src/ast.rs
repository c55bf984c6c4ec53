//! The syntax tree: what the parser builds from pest pairs. Every node carries its span;
//! nothing here is resolved or typed yet (that is `check`'s job).

use crate::source::Span;

/// One parsed source file.
#[derive(Debug, Clone, Default)]
pub struct Ast {
    pub module: Option<Ident>,
    pub imports: Vec<Import>,
    pub defs: Vec<Def>,
    pub recipes: Vec<Recipe>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Import {
    /// The module path, e.g. `std.optax`.
    pub module: Ident,
    pub names: ImportNames,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum ImportNames {
    /// `import std.optax.*`
    All,
    /// `import std.optax.{adam, sgd}`
    Some(Vec<Ident>),
    /// `import std.optax`: the module alone, which imports nothing by name.
    Module,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefKind {
    Transform,
    Optimizer,
    Schedule,
    /// A function of values (`function newton_schulz(X: real, ...) { ... X }`), expanded
    /// where a transform or optimizer calls it.
    Function,
}

impl DefKind {
    pub fn keyword(self) -> &'static str {
        match self {
            DefKind::Transform => "transform",
            DefKind::Optimizer => "optimizer",
            DefKind::Schedule => "schedule",
            DefKind::Function => "function",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Def {
    pub kind: DefKind,
    pub name: Ident,
    pub params: Vec<Param>,
    pub requires: Vec<Requirement>,
    pub body: DefBody,
    pub span: Span,
}

/// `requires COND else "message"` on a definition.
#[derive(Debug, Clone)]
pub struct Requirement {
    pub cond: Expr,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum DefBody {
    /// `= expr`: a chain of definitions, or a schedule written as one expression.
    Expr(Expr),
    /// `{ statements }`
    Block(Vec<Stmt>),
    /// `= builtin "name"`
    Builtin(String, Span),
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: Ident,
    pub ty: TypeExpr,
    pub constraint: Option<Constraint>,
    pub default: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    Real,
    Int,
    Bool,
    Schedule,
    /// A string chosen from a fixed set (`mode: str in {"cos", "linear"}`).
    Str,
    /// A chain of transforms and optimizers (`adv_optimizer: normalize() |> sgd(...)`),
    /// for builtin wrappers that run chains of their own (`sam`).
    Chain,
}

impl ScalarType {
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::Real => "real",
            ScalarType::Int => "int",
            ScalarType::Bool => "bool",
            ScalarType::Schedule => "schedule",
            ScalarType::Str => "str",
            ScalarType::Chain => "chain",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeExpr {
    Scalar(ScalarType),
    List(ScalarType),
    Map(ScalarType, ScalarType),
}

#[derive(Debug, Clone)]
pub enum Constraint {
    /// `in [lo, hi)` and friends; `lo_closed` is `[`, `hi_closed` is `]`.
    Range {
        lo: Expr,
        lo_closed: bool,
        hi: Expr,
        hi_closed: bool,
        span: Span,
    },
    /// `> 0`, `>= 0`, `< 1`, `<= 1`.
    Bound { op: CmpOp, value: Expr, span: Span },
    /// `in {"cos", "linear"}`
    Choice { values: Vec<String>, span: Span },
}

impl Constraint {
    pub fn span(&self) -> Span {
        match self {
            Constraint::Range { span, .. }
            | Constraint::Bound { span, .. }
            | Constraint::Choice { span, .. } => *span,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateExtent {
    Element,
    Tensor,
    Scalar,
    Row,
    Col,
    /// `matrix(rows, cols)`: one matrix per tensor, each side the length of the tensor's
    /// matrix view's rows or columns.
    Matrix(MatDim, MatDim),
}

/// One side of a matrix state: the tensor's matrix view's rows or its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatDim {
    Rows,
    Cols,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignOp {
    Set,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone)]
pub enum Stmt {
    State {
        name: Ident,
        extent: Option<(StateExtent, Span)>,
        init: Expr,
        span: Span,
    },
    Let {
        name: Ident,
        value: Expr,
        span: Span,
    },
    Assign {
        target: Ident,
        op: AssignOp,
        value: Expr,
        span: Span,
    },
    /// `skip if cond`
    Skip { cond: Expr, span: Span },
    /// `run NAME`: a chain parameter's stages, inlined here when the recipe is elaborated.
    Run { chain: Ident, span: Span },
    /// `eval param = expr`: the evaluation view of the parameters.
    Eval { value: Expr, span: Span },
    /// `observe { ... }` in a schedule.
    Observe { stmts: Vec<Stmt>, span: Span },
    /// `repeat n { ... }`: `let`s and one matrix value updated, n times.
    Repeat {
        count: Expr,
        stmts: Vec<Stmt>,
        span: Span,
    },
    /// `every k steps { ... }`: assignments that take effect at steps k, 2k, …
    Every {
        period: Expr,
        stmts: Vec<Stmt>,
        span: Span,
    },
    /// A bare expression: the value of a schedule block (its last line).
    Expr(Expr),
}

impl Stmt {
    /// Where the statement is written.
    pub fn span(&self) -> Span {
        match self {
            Stmt::State { span, .. }
            | Stmt::Let { span, .. }
            | Stmt::Assign { span, .. }
            | Stmt::Skip { span, .. }
            | Stmt::Run { span, .. }
            | Stmt::Eval { span, .. }
            | Stmt::Observe { span, .. }
            | Stmt::Repeat { span, .. }
            | Stmt::Every { span, .. } => *span,
            Stmt::Expr(e) => e.span,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    And,
    Or,
    Cmp(CmpOp),
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Cmp(c) => c.symbol(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    /// A numeric literal; `is_int` when written without `.` or exponent.
    Number {
        value: f64,
        is_int: bool,
    },
    Bool(bool),
    /// A string literal (the quotes removed).
    Str(String),
    Name(String),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Call {
        callee: Ident,
        args: Vec<Arg>,
    },
    Index(Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
    Map(Vec<(MapKey, Expr)>),
    /// `a |> b |> c`: a chain of update stages.
    Pipe(Vec<Expr>),
}

#[derive(Debug, Clone)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Debug, Clone)]
pub enum MapKey {
    Number(f64, Span),
    Name(Ident),
}

#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: Ident,
    pub items: Vec<RecipeItem>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum RecipeItem {
    Steps(Expr, Span),
    Schedule(Ident, Expr, Span),
    Groups(Vec<GroupDef>, Span),
    Update(Expr, Span),
    Model(Expr, Span),
    Data(Expr, Span),
    /// `precision { key: value, ... }`
    Precision(Vec<(Ident, Ident)>, Span),
    /// `parallel { data: 8, zero: 1, ... }`: the parallelism plan.
    Parallel(Vec<(Ident, Expr)>, Span),
    /// `curriculum [after N] { key = value ... }`: one phase of a sampling curriculum.
    Curriculum {
        after: Option<Expr>,
        entries: Vec<(Ident, Expr)>,
        span: Span,
    },
    /// A line that is no recipe item (`accumulate 8`, `fp16 = true`): its first word and
    /// the rest of it, kept for the checker to name the anneal spelling.
    Unknown {
        name: Ident,
        rest: String,
        span: Span,
    },
}

#[derive(Debug, Clone)]
pub struct GroupDef {
    pub name: Ident,
    /// `None` for `rest`: every tensor no earlier group matched.
    pub patterns: Option<Vec<(String, Span)>>,
    pub except: Vec<(String, Span)>,
    pub span: Span,
}
