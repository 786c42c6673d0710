//! Query strings as Fly's clients write them: repeated keys (`state=a&state=b`), comma
//! lists, and key families (`metadata.KEY=VALUE`), which serde's `Query` cannot read.

use super::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::convert::Infallible;
use std::str::FromStr;

/// The decoded `key=value` pairs of a request's query, in order.
#[derive(Debug, Default, Clone)]
pub struct QueryPairs(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(QueryPairs::parse(parts.uri.query().unwrap_or("")))
    }
}

impl QueryPairs {
    pub fn parse(query: &str) -> QueryPairs {
        QueryPairs(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value given for `key` (a repeated scalar: the last one wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, repeated or comma-separated, without empty items.
    pub fn list(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// `(KEY, VALUE)` for every `prefixKEY=VALUE`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.0
            .iter()
            .filter_map(move |(k, v)| Some((k.strip_prefix(prefix)?, v.as_str())))
    }

    /// A boolean flag: absent is false; `true`/`1`/empty are true; `false`/`0` false.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "`{key}` must be true or false, not `{other}`"
            ))),
        }
    }

    /// A parsed value, or a 400 naming the key.
    pub fn parsed<T: FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!("`{key}` has an invalid value `{v}`"))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repeated and comma-separated values are both lists; numbers parse or are a 400.
    #[test]
    fn reads_lists_flags_and_prefixes() {
        let q = QueryPairs::parse("state=started&state=stopped,destroyed");
        assert_eq!(q.list("state"), ["started", "stopped", "destroyed"]);
        assert!(QueryPairs::parse("force_stop").flag("force_stop").unwrap());
        let meta = QueryPairs::parse("metadata.role=db&metadata.tier=a%20b&region=ams");
        let pairs: Vec<_> = meta.with_prefix("metadata.").collect();
        assert_eq!(pairs, [("role", "db"), ("tier", "a b")]);
        assert!(!q.flag("force_stop").unwrap());
        assert!(QueryPairs::parse("x=maybe").flag("x").is_err());
        assert_eq!(
            QueryPairs::parse("n=5").parsed::<u32>("n").unwrap(),
            Some(5)
        );
        assert!(QueryPairs::parse("n=five").parsed::<u32>("n").is_err());
    }
}
