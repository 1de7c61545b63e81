//! Request parameters as OAuth reads them: empty means absent, a name given twice is an error,
//! and sizes are capped before anything else looks at the values.

use std::collections::BTreeMap;

/// Why a parameter list was refused before any parameter was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParamsProblem {
    TooLarge,
    Duplicated(String),
}

/// Parameters by name, each present at most once and non-empty.
pub(crate) struct Params<'a> {
    map: BTreeMap<&'a str, &'a str>,
}

impl<'a> Params<'a> {
    /// Reads decoded `(name, value)` pairs; refuses a total above `max_total` bytes and any
    /// name that occurs twice with a value (RFC 6749 §3.1: "MUST NOT be included more than once").
    pub(crate) fn parse(
        pairs: &'a [(String, String)],
        max_total: usize,
    ) -> Result<Self, ParamsProblem> {
        let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        if total > max_total {
            return Err(ParamsProblem::TooLarge);
        }
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
            if value.is_empty() {
                continue;
            }
            if map.insert(name.as_str(), value.as_str()).is_some() {
                return Err(ParamsProblem::Duplicated(name.clone()));
            }
        }
        Ok(Params { map })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a str> {
        self.map.get(name).copied()
    }

    /// The first parameter longer than `max` bytes, if any.
    pub(crate) fn oversized(&self, max: usize) -> Option<&'a str> {
        self.map
            .iter()
            .find(|(_, v)| v.len() > max)
            .map(|(k, _)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_values_are_absent_and_duplicates_refused() {
        let p = pairs(&[("a", ""), ("a", "1"), ("b", "2")]);
        let params = Params::parse(&p, 100).unwrap();
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("c"), None);
        let p = pairs(&[("a", "1"), ("a", "2")]);
        assert_eq!(
            Params::parse(&p, 100).err(),
            Some(ParamsProblem::Duplicated("a".into()))
        );
        let p = pairs(&[("a", &"x".repeat(200))]);
        assert_eq!(Params::parse(&p, 100).err(), Some(ParamsProblem::TooLarge));
    }
}
