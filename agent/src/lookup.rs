//! Finding one object by what a person typed: an exact name or id first,
//! else a unique id prefix (as Docker and Swarm do). Callers turn the
//! outcome into their own error.

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<T> {
    One(T),
    Nothing,
    /// The prefix matches this many.
    Several(usize),
}

/// `exact` when there is one, else the only one of `by_prefix`.
pub fn find<T>(exact: Option<T>, by_prefix: impl Iterator<Item = T>) -> Found<T> {
    if let Some(t) = exact {
        return Found::One(t);
    }
    let mut all: Vec<T> = by_prefix.collect();
    match all.len() {
        0 => Found::Nothing,
        1 => all.pop().map(Found::One).unwrap_or(Found::Nothing),
        n => Found::Several(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_unique_prefix() {
        let ids = ["abc1", "abc2", "def"];
        let prefix = |p: &'static str| ids.iter().filter(move |i| i.starts_with(p));
        assert_eq!(find(Some(&"web"), prefix("abc")), Found::One(&"web"));
        assert_eq!(find(None, prefix("d")), Found::One(&"def"));
        assert_eq!(find(None, prefix("abc")), Found::Several(2));
        assert_eq!(find(None, prefix("x")), Found::Nothing);
    }
}
