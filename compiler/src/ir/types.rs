//! Value types in a body: the kind of a value (real, int, bool), its extent (how finely it
//! varies: step-uniform, per group, per tensor, per slice, per element, or a matrix) and
//! the scopes reductions reduce over.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extent {
    Uniform,
    Group,
    Tensor,
    Outer,
    Row,
    Col,
    Unit,
    Lead,
    Element,
    /// Each tensor viewed as one matrix (rows × cols, leading dimensions flattened into
    /// rows): values of `matrix(x)`, `A @ B`, `transpose(A)`, `eye(n)` and what combines
    /// them. Never mixed with per-element or per-slice values: `matrix(x)` and
    /// `elements(M)` cross between the two.
    Matrix,
}

impl Extent {
    pub fn describe(self) -> &'static str {
        match self {
            Extent::Uniform => "step-uniform",
            Extent::Group => "per-group",
            Extent::Tensor => "per-tensor",
            Extent::Outer => "per-outer-slice",
            Extent::Row => "per-row",
            Extent::Col => "per-column",
            Extent::Unit => "per-unit",
            Extent::Lead => "per-leading-index",
            Extent::Element => "per-element",
            Extent::Matrix => "a matrix",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Extent::Uniform => 0,
            Extent::Group => 1,
            Extent::Tensor => 2,
            Extent::Outer => 3,
            Extent::Row | Extent::Col | Extent::Unit | Extent::Lead => 4,
            Extent::Element => 5,
            Extent::Matrix => 6,
        }
    }

    /// Whether a value of this extent can be held where `other` is expected (it varies
    /// no more finely).
    pub fn fits_in(self, other: Extent) -> bool {
        if self == other {
            return true;
        }
        if self == Extent::Matrix {
            return false;
        }
        if other == Extent::Matrix {
            // A number per tensor (or coarser) scales a matrix; nothing finer enters one.
            return self.rank() <= 2;
        }
        if other == Extent::Element {
            return true;
        }
        match (self, other) {
            (Extent::Outer, Extent::Row | Extent::Col) => true,
            (a, b) if a.rank() <= 2 => a.rank() <= b.rank(),
            _ => false,
        }
    }

    /// Whether a value of this extent and one of `other` cannot meet in one operation:
    /// a matrix with a per-element or per-slice value (`matrix(x)` and `elements(M)`
    /// convert).
    pub fn clashes(self, other: Extent) -> bool {
        (self == Extent::Matrix && !other.fits_in(self))
            || (other == Extent::Matrix && !self.fits_in(other))
    }

    /// The extent of a result combining both (a matrix when they clash: the checker has
    /// reported that).
    pub fn join(self, other: Extent) -> Extent {
        if self.clashes(other) {
            return Extent::Matrix;
        }
        if self.fits_in(other) {
            other
        } else if other.fits_in(self) {
            self
        } else {
            Extent::Element
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    Real,
    Int,
    Bool,
}

impl ValueKind {
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Real => "real",
            ValueKind::Int => "int",
            ValueKind::Bool => "bool",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Type {
    pub kind: ValueKind,
    pub extent: Extent,
}

/// The scope a reduction sums over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Tensor,
    Group,
    Global,
    /// Over d0 (the largest dimension): one value per row.
    Row,
    /// Over d1: one value per column.
    Col,
    /// Over d0 and d1: one value per outer slice.
    Outer,
    /// Optax's unitwise-norm axes.
    Unit,
    /// Over every axis but the first: one value per leading index.
    Lead,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Tensor => "tensor",
            Scope::Group => "group",
            Scope::Global => "global",
            Scope::Row => "row",
            Scope::Col => "col",
            Scope::Outer => "outer",
            Scope::Unit => "unit",
            Scope::Lead => "lead",
        }
    }

    pub fn extent(self) -> Extent {
        match self {
            Scope::Tensor => Extent::Tensor,
            Scope::Group => Extent::Group,
            Scope::Global => Extent::Uniform,
            Scope::Row => Extent::Row,
            Scope::Col => Extent::Col,
            Scope::Outer => Extent::Outer,
            Scope::Unit => Extent::Unit,
            Scope::Lead => Extent::Lead,
        }
    }
}
