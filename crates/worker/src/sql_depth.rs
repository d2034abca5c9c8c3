//! Bounds how deep the expressions of a client's SQL text can nest, before Polars parses
//! and translates it. The parser builds a chain of operators (`a + a + … + a`, `… UNION
//! SELECT …`) as a tree as deep as the chain without counting it against its recursion
//! limit, and Polars' SQL translator then walks that tree recursively: about 500 `+`
//! overflowed a runtime thread's 2 MiB stack (debug build), which aborts the worker. A
//! `CASE` of many branches becomes a chain of Polars `when`s whose planning took time in
//! the square of the branches (3,000: 7.8 s).
//!
//! The bound is read off the tokens, which are flat: in each comma-separated item of each
//! parenthesised group, every token that is not a name, a literal or punctuation (an
//! operator, a keyword) may add a level, and a group adds its deepest item's levels to
//! the item it sits in. Set operations (`UNION`, `EXCEPT`, `INTERSECT`, `MINUS`) chain
//! whole queries, whose select lists have commas of their own, so they count in their group
//! whatever its items. That is never less than the depth of the tree, and close to it
//! for the long chains that matter (a `WHERE` of `k` equalities joined by `AND` counts
//! `2k - 1`, for a tree `k` deep).

use polaroid_proto::excerpt;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{EngineError, EngineResult};

/// The most levels the bound above may reach. A chain of 300 `+` runs on a 2 MiB stack in
/// a debug build, 500 did not.
pub const MAX_SQL_DEPTH: usize = 256;

/// One open group: operators in its current item, the deepest group closed within that
/// item, the deepest of its finished items, and the set operations across all its items.
#[derive(Default)]
struct Group {
    operators: usize,
    inner: usize,
    deepest: usize,
    set_operations: usize,
}

impl Group {
    fn item(&self) -> usize {
        self.operators + self.inner
    }

    fn depth(&self) -> usize {
        self.deepest.max(self.item()) + self.set_operations
    }
}

/// The bound of `query`'s depth; text the tokenizer refuses is left to Polars to report.
fn depth(query: &str) -> usize {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, query).tokenize() else {
        return 0;
    };
    let mut groups = vec![Group::default()];
    for token in &tokens {
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => groups.push(Group::default()),
            Token::RParen | Token::RBracket | Token::RBrace => close(&mut groups),
            Token::Comma | Token::SemiColon => {
                if let Some(group) = groups.last_mut() {
                    group.deepest = group.deepest.max(group.item());
                    group.operators = 0;
                    group.inner = 0;
                }
            }
            Token::Word(word) if word.keyword == Keyword::NoKeyword => {}
            Token::Word(word)
                if matches!(
                    word.keyword,
                    Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS
                ) =>
            {
                if let Some(group) = groups.last_mut() {
                    group.set_operations += 1;
                }
            }
            Token::Whitespace(_)
            | Token::Period
            | Token::Number(..)
            | Token::Char(_)
            | Token::EOF
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_) => {}
            _ => {
                if let Some(group) = groups.last_mut() {
                    group.operators += 1;
                }
            }
        }
    }
    // Groups left open close where the text ends.
    while groups.len() > 1 {
        close(&mut groups);
    }
    groups.last().map_or(0, Group::depth)
}

/// Closes the innermost group into the item it sits in (an unmatched closing bracket
/// closes nothing).
fn close(groups: &mut Vec<Group>) {
    if groups.len() > 1 {
        let closed = groups.pop().map_or(0, |group| group.depth() + 1);
        if let Some(outer) = groups.last_mut() {
            outer.inner = outer.inner.max(closed);
        }
    }
}

/// INVALID_ARGUMENT for SQL text (a query, a predicate) whose expressions could nest past
/// [`MAX_SQL_DEPTH`].
pub fn check(what: &str, query: &str) -> EngineResult<()> {
    let depth = depth(query);
    if depth > MAX_SQL_DEPTH {
        return Err(EngineError::invalid(format!(
            "{what} `{}` nests up to {depth} operators deep, over the limit of {MAX_SQL_DEPTH}: \
             split it into steps",
            excerpt(query)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn depth_bounds_the_tree() {
        assert_eq!(depth("SELECT a FROM t"), 2);
        // A chain counts each operator; items of a list stand apart.
        assert!(depth(&format!("SELECT {}a FROM t", "a + ".repeat(100))) >= 100);
        let wide = format!("SELECT {}a FROM t", "a + a, ".repeat(1_000));
        assert!(depth(&wide) < 10, "{}", depth(&wide));
        // Parentheses add their inside to the operand they are.
        let nested = format!("SELECT {}a{} FROM t", "a + (".repeat(40), ")".repeat(40));
        assert!(depth(&nested) >= 80, "{}", depth(&nested));
        // IN lists and function arguments are lists, not chains.
        let list = format!("SELECT * FROM t WHERE a IN ({}0)", "1, ".repeat(100_000));
        assert!(depth(&list) < 10);
        // Unbalanced or unreadable text is Polars' to report.
        assert!(depth("SELECT ((((a") >= 4);
        assert!(depth("SELECT ))) a") < 5);
        assert_eq!(depth("SELECT 'unterminated"), 0);
    }

    #[test]
    fn deep_chains_are_invalid_argument() {
        for query in [
            format!("SELECT {}a FROM t", "a+".repeat(100_000)),
            format!("SELECT CASE {} END FROM t", "WHEN a THEN 1 ".repeat(1_000)),
            format!("SELECT 1 {}", "UNION SELECT 1 ".repeat(1_000)),
            // Select lists of several columns: their commas must not hide the chain.
            format!(
                "{}SELECT a, c FROM t",
                "SELECT a, c FROM t UNION ALL ".repeat(3_000)
            ),
            format!(
                "SELECT a, b FROM t {}",
                "EXCEPT SELECT a, b FROM t ".repeat(300)
            ),
        ] {
            let error = check("query", &query).unwrap_err();
            assert_eq!(error.code(), polaroid_proto::ErrorCode::InvalidArgument);
            assert!(
                error.to_string().contains("over the limit of 256"),
                "{error}"
            );
        }
        check(
            "query",
            &format!("SELECT {}a FROM t", "a+".repeat(MAX_SQL_DEPTH - 5)),
        )
        .unwrap();
    }

    /// The longest chain the bound lets through runs on a runtime thread's stack (2 MiB):
    /// set operations recurse through Polars' translator with larger frames than `+`.
    #[test]
    fn the_longest_chain_allowed_runs_on_a_runtime_stack() {
        use polars::prelude::*;
        let query = format!(
            "{}SELECT a, c FROM t",
            "SELECT a, c FROM t UNION ALL ".repeat(MAX_SQL_DEPTH - 3)
        );
        check("query", &query).unwrap();
        let rows = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let mut context = polars::sql::SQLContext::new();
                context.register("t", df!("a" => [1i64], "c" => ["x"]).unwrap().lazy());
                context.execute(&query).unwrap().collect().unwrap().height()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(rows, MAX_SQL_DEPTH - 2);
    }
}
