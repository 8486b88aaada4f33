//! The events query language: parsing into a [`Query`].
//!
//! Grammar (operators are upper case; anything else is a word):
//! ```text
//! query   := or?                          (empty = every event)
//! or      := and ("OR" and)*
//! and     := unary (["AND"] unary)*       (juxtaposition is AND)
//! unary   := ("NOT" | "-") unary | primary
//! primary := "(" or ")" | FIELD ":" value | value
//! value   := WORD | "quoted phrase" | "(" or ")"   (a group applies FIELD to its bare terms)
//! ```
//! - `FIELD` is a dotted name of letters, digits, `_`, `@`, `.`, `-`
//!   (`host.name`, `@timestamp`); it must touch the `:` and its value.
//! - In a `WORD`, `*` is a wildcard (any run of characters); `\` escapes
//!   the next character (`\*`, `\:`, `\(`, `\"`, `\\`, `\ `). After `field:`
//!   the value runs to the next space or parenthesis, so `source.ip:fe80::1`
//!   works. A leading `-` (`-user.name:root`) means NOT.
//! - Inside quotes only `\"` and `\\` are escapes; `*` is literal.
//! - `field:*` means the field exists; a bare `*` matches everything.
//! - `@timestamp:` takes one RFC 3339 time (exact match); ranges go through
//!   the `from`/`to` bounds of a search, not the query.
//!
//! Errors carry the 0-based character position of the offending token, and
//! print as `unexpected ')' at 14`.

use std::fmt;
use std::str::FromStr;

use chrono::DateTime;

/// A parsed query. Build it with [`parse_query`] (or `str::parse`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Query {
    /// Every event.
    #[default]
    All,
    /// One field or full-text condition. `field: None` is a bare term,
    /// searched as full text in `message` (or `event.original` without one).
    Term { field: Option<String>, value: Match },
    /// Every sub-query matches.
    And(Vec<Query>),
    /// At least one sub-query matches.
    Or(Vec<Query>),
    /// The sub-query does not match.
    Not(Box<Query>),
}

/// The value side of a [`Query::Term`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// An unquoted word, escapes resolved. On a keyword field: the exact value
    /// (also as a number or boolean when it reads as one). In full text: its
    /// tokens, as a phrase when there are several.
    Word(String),
    /// A quoted string: exact value on a keyword field, phrase in full text.
    Phrase(String),
    /// A word with `*` wildcards, split at each `*` (so at least two parts;
    /// `adm*` is `["adm", ""]`).
    Wildcard(Vec<String>),
    /// `field:*`: the field is present (with any value, or sub-fields).
    Exists,
}

/// A syntax error in a query, with the 0-based character position where it
/// was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at {position}")]
pub struct QueryError {
    /// 0-based character offset in the query text.
    pub position: usize,
    /// What is wrong, e.g. `unexpected ')'`.
    pub message: String,
}

/// Parses a query; an empty (or blank) query matches every event.
pub fn parse_query(s: &str) -> Result<Query, QueryError> {
    let tokens = lex(s)?;
    let end = s.chars().count();
    let mut p = Parser {
        tokens,
        next: 0,
        end,
    };
    if p.tokens.is_empty() {
        return Ok(Query::All);
    }
    let q = p.or(None)?;
    if let Some(t) = p.peek() {
        return Err(err(t.pos, format!("unexpected {}", t.tok.describe())));
    }
    Ok(q)
}

impl FromStr for Query {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_query(s)
    }
}

impl Query {
    /// Whether this query matches every event.
    pub fn is_all(&self) -> bool {
        matches!(self, Query::All)
    }
}

impl fmt::Display for Query {
    /// Renders the query back in the query language (normalized form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::All => f.write_str("*"),
            Query::Term { field, value } => {
                if let Some(field) = field {
                    write!(f, "{field}:")?;
                }
                match value {
                    Match::Word(w) => f.write_str(&escape_word(w)),
                    Match::Phrase(p) => {
                        write!(f, "\"{}\"", p.replace('\\', "\\\\").replace('"', "\\\""))
                    }
                    Match::Wildcard(parts) => {
                        let parts: Vec<String> = parts.iter().map(|p| escape_word(p)).collect();
                        f.write_str(&parts.join("*"))
                    }
                    Match::Exists => f.write_str("*"),
                }
            }
            Query::And(v) | Query::Or(v) => {
                let op = if matches!(self, Query::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                f.write_str("(")?;
                for (i, q) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    write!(f, "{q}")?;
                }
                f.write_str(")")
            }
            Query::Not(q) => write!(f, "NOT {q}"),
        }
    }
}

fn escape_word(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    for c in w.chars() {
        if c.is_whitespace() || matches!(c, '(' | ')' | '"' | '\\' | '*' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    if matches!(out.as_str(), "AND" | "OR" | "NOT") || out.starts_with('-') {
        out.insert(0, '\\');
    }
    out
}

fn err(position: usize, message: impl Into<String>) -> QueryError {
    QueryError {
        position,
        message: message.into(),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    /// `-` right before a term.
    Minus,
    /// `name:` (the value follows without space).
    Field(String),
    /// A word: its parts between unescaped `*` (one part = no wildcard).
    Word(Vec<String>),
    Quoted(String),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::And => "'AND'".into(),
            Tok::Or => "'OR'".into(),
            Tok::Not => "'NOT'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Field(name) => format!("'{name}:'"),
            Tok::Word(parts) => format!("'{}'", parts.join("*")),
            Tok::Quoted(s) => format!("\"{s}\""),
        }
    }
}

#[derive(Debug)]
struct Spanned {
    tok: Tok,
    pos: usize,
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '.' | '-')
}

fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"')
}

fn lex(s: &str) -> Result<Vec<Spanned>, QueryError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Set right after `field:`: the next token is its value.
    let mut value_of: Option<(String, usize)> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some((name, pos)) = &value_of {
            if c.is_whitespace() || c == ')' {
                return Err(err(*pos, format!("missing value after '{name}:'")));
            }
        }
        let in_value = value_of.take().is_some();
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '(' => {
                out.push(Spanned {
                    tok: Tok::LParen,
                    pos: i,
                });
                i += 1;
            }
            ')' => {
                out.push(Spanned {
                    tok: Tok::RParen,
                    pos: i,
                });
                i += 1;
            }
            '"' => {
                let start = i;
                i += 1;
                let mut text = String::new();
                let mut closed = false;
                while i < chars.len() {
                    match chars[i] {
                        '\\' if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                            text.push(chars[i + 1]);
                            i += 2;
                        }
                        '"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        other => {
                            text.push(other);
                            i += 1;
                        }
                    }
                }
                if !closed {
                    return Err(err(start, "unterminated quoted phrase"));
                }
                out.push(Spanned {
                    tok: Tok::Quoted(text),
                    pos: start,
                });
            }
            '-' if !in_value
                && chars
                    .get(i + 1)
                    .is_some_and(|n| !n.is_whitespace() && *n != ')') =>
            {
                out.push(Spanned {
                    tok: Tok::Minus,
                    pos: i,
                });
                i += 1;
            }
            _ => {
                let start = i;
                let mut parts = vec![String::new()];
                // True while every character so far is a plain field character.
                let mut field_like = !in_value;
                let mut field_end = None;
                while i < chars.len() && !ends_word(chars[i]) {
                    let ch = chars[i];
                    match ch {
                        '\\' => {
                            let Some(&next) = chars.get(i + 1) else {
                                return Err(err(i, "dangling '\\' at the end of the query"));
                            };
                            push_char(&mut parts, next);
                            field_like = false;
                            i += 2;
                        }
                        '*' => {
                            parts.push(String::new());
                            field_like = false;
                            i += 1;
                        }
                        ':' if field_like && i > start => {
                            field_end = Some(i);
                            break;
                        }
                        _ => {
                            if !is_field_char(ch) {
                                field_like = false;
                            }
                            push_char(&mut parts, ch);
                            i += 1;
                        }
                    }
                }
                if let Some(colon) = field_end {
                    let name: String = chars[start..colon].iter().collect();
                    i = colon + 1;
                    if i >= chars.len() {
                        return Err(err(start, format!("missing value after '{name}:'")));
                    }
                    value_of = Some((name.clone(), start));
                    out.push(Spanned {
                        tok: Tok::Field(name),
                        pos: start,
                    });
                    continue;
                }
                let raw: String = chars[start..i].iter().collect();
                let tok = if in_value {
                    Tok::Word(parts)
                } else {
                    match raw.as_str() {
                        "AND" => Tok::And,
                        "OR" => Tok::Or,
                        "NOT" => Tok::Not,
                        _ => Tok::Word(parts),
                    }
                };
                out.push(Spanned { tok, pos: start });
            }
        }
    }
    Ok(out)
}

fn push_char(parts: &mut [String], c: char) {
    if let Some(last) = parts.last_mut() {
        last.push(c);
    }
}

struct Parser {
    tokens: Vec<Spanned>,
    next: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.next)
    }

    fn bump(&mut self) -> Option<&Spanned> {
        let t = self.tokens.get(self.next);
        self.next += 1;
        t
    }

    /// Error for a missing operand after the operator at `pos`.
    fn missing_after(&self, what: &str, pos: usize) -> QueryError {
        match self.peek() {
            Some(t) => err(
                t.pos,
                format!("expected a term after {what}, found {}", t.tok.describe()),
            ),
            None => err(
                self.end,
                format!("unexpected end of query after {what} (at {pos})"),
            ),
        }
    }

    fn or(&mut self, field: Option<&str>) -> Result<Query, QueryError> {
        let mut items = vec![self.and(field)?];
        while let Some(t) = self.peek() {
            if t.tok != Tok::Or {
                break;
            }
            let pos = t.pos;
            self.next += 1;
            if !self.starts_term() {
                return Err(self.missing_after("'OR'", pos));
            }
            items.push(self.and(field)?);
        }
        Ok(flatten(items, false))
    }

    fn starts_term(&self) -> bool {
        self.peek().is_some_and(|t| {
            matches!(
                t.tok,
                Tok::LParen | Tok::Not | Tok::Minus | Tok::Field(_) | Tok::Word(_) | Tok::Quoted(_)
            )
        })
    }

    fn and(&mut self, field: Option<&str>) -> Result<Query, QueryError> {
        let mut items = vec![self.unary(field)?];
        while let Some(t) = self.peek() {
            match t.tok {
                Tok::Or | Tok::RParen => break,
                Tok::And => {
                    let pos = t.pos;
                    self.next += 1;
                    if !self.starts_term() {
                        return Err(self.missing_after("'AND'", pos));
                    }
                    items.push(self.unary(field)?);
                }
                _ => items.push(self.unary(field)?),
            }
        }
        Ok(flatten(items, true))
    }

    fn unary(&mut self, field: Option<&str>) -> Result<Query, QueryError> {
        let Some(t) = self.peek() else {
            return Err(err(self.end, "unexpected end of query"));
        };
        if matches!(t.tok, Tok::Not | Tok::Minus) {
            let (pos, what) = (t.pos, t.tok.describe());
            self.next += 1;
            if !self.starts_term() {
                return Err(self.missing_after(&what, pos));
            }
            let inner = self.unary(field)?;
            return Ok(Query::Not(Box::new(inner)));
        }
        self.primary(field)
    }

    fn primary(&mut self, field: Option<&str>) -> Result<Query, QueryError> {
        let end = self.end;
        let Some(t) = self.bump() else {
            return Err(err(end, "unexpected end of query"));
        };
        let pos = t.pos;
        match t.tok.clone() {
            Tok::LParen => self.group(pos, field),
            Tok::Field(name) => {
                let Some(v) = self.bump() else {
                    return Err(err(pos, format!("missing value after '{name}:'")));
                };
                let vpos = v.pos;
                match v.tok.clone() {
                    Tok::LParen => self.group(vpos, Some(&name)),
                    Tok::Word(parts) => term(Some(&name), word_match(parts), vpos),
                    Tok::Quoted(s) => term(Some(&name), Match::Phrase(s), vpos),
                    other => Err(err(
                        vpos,
                        format!("unexpected {} after '{name}:'", other.describe()),
                    )),
                }
            }
            Tok::Word(parts) => {
                let m = word_match(parts);
                if field.is_none() && m == Match::Exists {
                    return Ok(Query::All);
                }
                term(field, m, pos)
            }
            Tok::Quoted(s) => term(field, Match::Phrase(s), pos),
            other => Err(err(pos, format!("unexpected {}", other.describe()))),
        }
    }

    fn group(&mut self, open: usize, field: Option<&str>) -> Result<Query, QueryError> {
        if let Some(t) = self.peek() {
            if t.tok == Tok::RParen {
                return Err(err(open, "empty parentheses"));
            }
        }
        let q = self.or(field)?;
        match self.bump() {
            Some(t) if t.tok == Tok::RParen => Ok(q),
            _ => Err(err(open, "missing ')' to close this '('")),
        }
    }
}

/// A word's match: a single part is a plain word, only stars is "exists".
fn word_match(mut parts: Vec<String>) -> Match {
    if parts.len() == 1 {
        return Match::Word(parts.pop().unwrap_or_default());
    }
    if parts.iter().all(String::is_empty) {
        return Match::Exists;
    }
    // Collapse runs of stars (`a**b` = `a*b`), keeping the first and last part.
    let last = parts.len() - 1;
    let mut out: Vec<String> = Vec::with_capacity(parts.len());
    for (i, p) in parts.into_iter().enumerate() {
        if p.is_empty() && i != 0 && i != last {
            continue;
        }
        out.push(p);
    }
    Match::Wildcard(out)
}

fn term(field: Option<&str>, value: Match, pos: usize) -> Result<Query, QueryError> {
    if field == Some("@timestamp") {
        match &value {
            Match::Word(s) | Match::Phrase(s) if DateTime::parse_from_rfc3339(s).is_ok() => {}
            Match::Exists => {}
            _ => {
                return Err(err(
                    pos,
                    "'@timestamp:' takes one RFC 3339 time (use the from/to bounds for ranges)",
                ))
            }
        }
    }
    Ok(Query::Term {
        field: field.map(str::to_owned),
        value,
    })
}

/// Joins operands under AND (`and`) or OR, merging nested ones of the same kind.
fn flatten(mut items: Vec<Query>, and: bool) -> Query {
    if items.len() == 1 {
        return items.pop().unwrap_or_default();
    }
    let mut out = Vec::with_capacity(items.len());
    for q in items {
        match q {
            Query::And(inner) if and => out.extend(inner),
            Query::Or(inner) if !and => out.extend(inner),
            q => out.push(q),
        }
    }
    if and {
        Query::And(out)
    } else {
        Query::Or(out)
    }
}
