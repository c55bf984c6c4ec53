//! Parameter-name globs with Python's `fnmatch.fnmatchcase` rules (what PyTorch users know):
//! `*` any run of characters (dots included), `?` one character, `[seq]` / `[!seq]` a set
//! with ranges; an unclosed `[` is a literal. Whole-name, case-sensitive matches. Also the
//! assignment of tensors to a recipe's groups.

use crate::ir::Group;

/// Rejects patterns that can never be what the user meant.
pub fn validate(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an empty pattern matches no tensor".into());
    }
    Ok(())
}

/// Whether `name` matches `pattern` entirely.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice, no recursion blowup.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = match_set(&p[pi..], n[ni]) {
                        if matched {
                            pi += next;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the set starting at `p[0] == '['`. Returns (matched, pattern length)
/// or `None` when the set is unclosed (then `[` is a literal).
fn match_set(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&'!');
    if negate {
        i += 1;
    }
    let start = i;
    let mut matched = false;
    while i < p.len() {
        if p[i] == ']' && i > start {
            return Some((matched != negate, i + 1));
        }
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// The group of each tensor: the first group whose patterns match (and whose `except`
/// patterns do not); otherwise the `rest` group. Errors name the tensor and the fix.
pub fn assign_groups(groups: &[Group], tensors: &[String]) -> Result<Vec<usize>, String> {
    let rest = groups.iter().position(|g| g.patterns.is_none());
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let hit = groups.iter().position(|g| {
            g.patterns.as_ref().is_some_and(|ps| {
                ps.iter().any(|p| matches(p, t)) && !g.except.iter().any(|p| matches(p, t))
            })
        });
        match hit.or(rest) {
            Some(g) => out.push(g),
            None => {
                return Err(format!(
                "tensor `{t}` matches no parameter group; add a group `other = rest` to collect it"
            ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn fnmatch_rules() {
        assert!(matches("*.bias", "0.bias"));
        assert!(matches("*.bias", "layers.2.bias"));
        assert!(!matches("*.bias", "0.weight"));
        assert!(matches("?.weight", "0.weight"));
        assert!(!matches("?.weight", "10.weight"));
        assert!(matches("[02].weight", "2.weight"));
        assert!(!matches("[!02].weight", "2.weight"));
        assert!(matches("[0-3].*", "3.bias"));
        assert!(matches("*norm*", "ln.norm.weight"));
        assert!(matches("a[b", "a[b"));
        assert!(matches("*", ""));
        assert!(!matches("BIAS", "bias"));
    }
}
