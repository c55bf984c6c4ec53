//! The one error type after the checker: lowering, legalizing, code generation, the step
//! (interpreter and fused executor) and the runtime report `Error`. Entry point: `Error`.
//!
//! Two kinds, kept apart so a user never mistakes a defect of anneal for a mistake of
//! theirs, or the other way round:
//! - `User`: something the caller can fix — a recipe a back end cannot run, tensors of the
//!   wrong size, a file that does not hold what it should — with the place it concerns
//!   (a path, a recipe, a tensor) and how to fix it, where there is one;
//! - `Internal`: an invariant of anneal's own broke (a pass that reads a slot no one
//!   assigned, a reduction the host never ran). It says "internal error, please report"
//!   and carries the context, and no input should ever produce one.
//!
//! Errors from before the checker are diagnostics (`diagnostic::Diagnostic`), with spans.
//! `?` turns a `String` or `&str` into a `User` error, so code that only formats a
//! message stays short; an internal error is always built on purpose (`Error::internal`).

use std::fmt;

/// What went wrong after the checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A mistake the caller can fix.
    User {
        /// What is wrong, in one sentence.
        message: String,
        /// The file, recipe or tensor it concerns, where that is not in the message.
        at: Option<String>,
        /// How to fix it.
        fix: Option<String>,
    },
    /// A broken invariant of anneal's own: a bug to report, never the caller's fault.
    Internal {
        /// What broke, and where.
        context: String,
    },
}

/// A result whose error is `Error`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn user(message: impl Into<String>) -> Error {
        Error::User {
            message: message.into(),
            at: None,
            fix: None,
        }
    }

    pub fn internal(context: impl Into<String>) -> Error {
        Error::Internal {
            context: context.into(),
        }
    }

    /// The same error, about `place` (a path, a recipe, a tensor); internal errors carry
    /// it as more context.
    pub fn at(self, place: impl Into<String>) -> Error {
        match self {
            Error::User { message, fix, .. } => Error::User {
                message,
                at: Some(place.into()),
                fix,
            },
            Error::Internal { context } => Error::Internal {
                context: format!("{}: {context}", place.into()),
            },
        }
    }

    /// The same user error, with how to fix it.
    pub fn fix(self, how: impl Into<String>) -> Error {
        match self {
            Error::User { message, at, .. } => Error::User {
                message,
                at,
                fix: Some(how.into()),
            },
            internal => internal,
        }
    }

    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Internal { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::User { message, at, fix } => {
                if let Some(at) = at {
                    write!(f, "{at}: ")?;
                }
                write!(f, "{message}")?;
                if let Some(fix) = fix {
                    write!(f, "; {fix}")?;
                }
                Ok(())
            }
            Error::Internal { context } => write!(
                f,
                "internal error, please report it with the recipe that caused it: {context}"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::user(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::user(message)
    }
}

/// Where an error leaves anneal for text (the CLI's stderr, a Python exception, a
/// `Result<_, String>` of a caller that only prints): its message as `Display` writes it.
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_internal_errors_read_differently() {
        let user = Error::user("tensor `w` has 3 values, the optimizer was built for 4")
            .at("r.anneal")
            .fix("build the optimizer for the model it steps");
        assert_eq!(
            user.to_string(),
            "r.anneal: tensor `w` has 3 values, the optimizer was built for 4; build the \
             optimizer for the model it steps"
        );
        assert!(!user.is_internal());
        let internal = Error::internal("pass 2 reads slot 7, which no one assigned").at("map");
        assert!(internal.is_internal());
        let text = internal.to_string();
        assert!(
            text.starts_with("internal error, please report it"),
            "{text}"
        );
        assert!(
            text.ends_with("map: pass 2 reads slot 7, which no one assigned"),
            "{text}"
        );
        // A plain message is a user error, so `?` keeps its text as it was.
        let from: Error = "no such file".into();
        assert_eq!(String::from(from), "no such file");
    }
}
